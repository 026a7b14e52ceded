//! The resolved model's typed parts: what checked IDL means, made once by
//! the checker, so that generators, `explain` and the tests do not each
//! re-read the syntax tree. The parser and the formatter keep the syntax
//! tree; everything downstream of the checker reads this.

pub mod chain;
pub mod convention;
pub mod inline;
pub mod op;

pub use chain::{Chain, FeatureBit, Guard, Mechanism, Step};
pub use convention::{Choice, Condition, Convention, Fixed, Form, Number, Page, Register, Status};
pub use op::{Context, Lowering, Op};
