//! Withdrawing a step: it is reported as withdrawn, logged as a fallback,
//! and nothing else is.

use pvi_backends::fallback::summary;
use pvi_backends::withdrawn::{is_withdrawn, withdraw};
use pvi_sdk::types::{ErrorKind, ErrorOrigin, PvError};

#[test]
fn a_withdrawn_step_is_known_and_logged_and_no_other_is() {
    let silent = PvError::new(ErrorKind::Failed, ErrorOrigin::Native);
    assert!(!is_withdrawn("timer_oneshot", 1));
    withdraw("timer_oneshot", 1, silent);
    withdraw("timer_oneshot", 9, silent); // beyond 8 steps: ignored
    withdraw("no such op", 1, silent); // ignored
    assert!(is_withdrawn("timer_oneshot", 1));
    assert!(!is_withdrawn("timer_oneshot", 2));
    assert!(!is_withdrawn("timer_cancel", 1));
    assert!(!is_withdrawn("timer_oneshot", 9));
    assert!(!is_withdrawn("no such op", 1));
    let logged: Vec<_> = summary().filter(|e| e.op == "timer_oneshot").collect();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!((logged[0].step, logged[0].kind), (1, ErrorKind::Failed));
}
