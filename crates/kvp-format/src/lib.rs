//! kvp-format (being built; see docs/ARCHITECTURE.md for its contract).
