//! Canonical formatting (placeholder while the printer is written).
