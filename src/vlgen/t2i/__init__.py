"""vlgen.t2i (see README layout)."""
