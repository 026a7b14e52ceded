//! The fallback log: one line per failing step, with how often.

use pvi_backends::fallback::{count, record, record_setup, summary, Event, SETUP};
use pvi_sdk::generated::ops::Op;
use pvi_sdk::types::{ErrorKind, ErrorOrigin, PvError};

#[test]
fn repeated_failures_are_one_line_with_a_count() {
    let unsupported = PvError::new(ErrorKind::Unsupported, ErrorOrigin::Native);
    let busy = PvError::new(ErrorKind::Busy, ErrorOrigin::Native);
    for _ in 0..1000 {
        record(Op::ConsoleWrite, 1, unsupported);
    }
    record(Op::ClockNs, 2, busy);
    record_setup(0, unsupported);
    record_setup(SETUP.len(), busy); // counted, not listed
    assert_eq!(count(), 1003);
    let lines: Vec<Event> = summary().collect();
    let expected = [
        Event {
            op: "clock_ns",
            step: 2,
            kind: ErrorKind::Busy,
            times: 1,
        },
        Event {
            op: "console_write",
            step: 1,
            kind: ErrorKind::Unsupported,
            times: 1000,
        },
        Event {
            op: SETUP[0],
            step: 0,
            kind: ErrorKind::Unsupported,
            times: 1,
        },
    ];
    for e in &expected {
        assert!(lines.contains(e), "{e:?} missing from {lines:?}");
    }
    assert_eq!(lines.len(), expected.len(), "{lines:?}");
    // Setup steps come after every op.
    assert_eq!(lines.last().map(|e| e.op), Some(SETUP[0]));
}
