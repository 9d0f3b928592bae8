"""vlgen.serving (see README layout)."""
