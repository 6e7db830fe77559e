"""One file per schema revision; each revision's tables are written out as they were then."""
