//! Export: records in the data-contract shape (DESIGN.md), and sinks.
pub mod jsonl;
pub mod otlp;
pub mod record;
