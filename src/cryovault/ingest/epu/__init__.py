"""EPU (Thermo Fisher single-particle acquisition): parsers of its files and its folder layout."""
