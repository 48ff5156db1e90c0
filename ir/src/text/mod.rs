//! The deterministic text form of a graph: printing and parsing.
