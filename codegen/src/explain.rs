//! `pvi explain` (placeholder while it is written).
