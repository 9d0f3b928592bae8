"""Reports: a minimal HTML kit (`html`), plots, and the caption-evaluation report (`captions`).

Imported on use (matplotlib and PIL load only when a report is written).
"""
