//! Export: the sinks that render the model's records (`crate::model`):
//! JSON lines and OTLP.
pub mod jsonl;
pub mod otlp;

#[cfg(test)]
mod golden_tests;
