//! Withdrawing a step: it is reported as withdrawn, logged as a fallback,
//! and nothing else is; a hypervisor's "unsupported" withdraws, pvi's own
//! verdicts do not.

use pvi_backends::fallback::summary;
use pvi_backends::withdrawn::{is_withdrawn, withdraw};
use pvi_sdk::generated::ops::Op;
use pvi_sdk::types::{ErrorKind, ErrorOrigin, PvError};

#[test]
fn a_withdrawn_step_is_known_and_logged_and_no_other_is() {
    let silent = PvError::new(ErrorKind::Failed, ErrorOrigin::Native);
    assert!(!is_withdrawn(Op::TimerOneshot, 1));
    withdraw(Op::TimerOneshot, 1, silent);
    withdraw(Op::TimerOneshot, 9, silent); // beyond 8 steps: ignored
    assert!(is_withdrawn(Op::TimerOneshot, 1));
    assert!(!is_withdrawn(Op::TimerOneshot, 2));
    assert!(!is_withdrawn(Op::TimerCancel, 1));
    assert!(!is_withdrawn(Op::TimerOneshot, 9));
    assert!(!is_withdrawn(Op::TimerOneshot, 0), "steps count from 1");
    let logged: Vec<_> = summary().filter(|e| e.op == "timer_oneshot").collect();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!((logged[0].step, logged[0].kind), (1, ErrorKind::Failed));
}

#[test]
fn a_hypervisors_unsupported_answer_withdraws_the_step_and_pvis_own_does_not() {
    use pvi_backends::withdrawn::{fell_back, refused_for_good};
    // The hypervisor's own status: no such call, for good.
    let enosys = PvError::new(ErrorKind::Unsupported, ErrorOrigin::Kvm(-1000));
    // pvi's own verdict (code 0): may pass later.
    let sequence_zero = PvError::new(ErrorKind::Unsupported, ErrorOrigin::Hyperv(0));
    let native = PvError::new(ErrorKind::Unsupported, ErrorOrigin::Native);
    // The hypervisor's, but not "unsupported": the next call may succeed.
    let busy = PvError::new(ErrorKind::Busy, ErrorOrigin::Xen(-16));
    assert!(refused_for_good(enosys));
    // Every hypervisor's own "unsupported", not only those someone listed.
    for origin in [
        ErrorOrigin::Hyperv(2),
        ErrorOrigin::Kvm(-1000),
        ErrorOrigin::Vmware(1),
        ErrorOrigin::Xen(-38),
    ] {
        assert!(refused_for_good(PvError::new(
            ErrorKind::Unsupported,
            origin
        )));
    }
    for error in [sequence_zero, native, busy] {
        assert!(!refused_for_good(error), "{error:?}");
    }

    fell_back(Op::ClockNs, 1, sequence_zero);
    fell_back(Op::Wallclock, 1, native);
    fell_back(Op::StealNs, 1, busy);
    assert!(!is_withdrawn(Op::ClockNs, 1));
    assert!(!is_withdrawn(Op::Wallclock, 1));
    assert!(!is_withdrawn(Op::StealNs, 1));

    fell_back(Op::SendIpi, 1, enosys);
    assert!(is_withdrawn(Op::SendIpi, 1));
    assert!(!is_withdrawn(Op::SendIpi, 2));
    let logged: Vec<_> = summary().filter(|e| e.op == "send_ipi").collect();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(
        (logged[0].step, logged[0].kind, logged[0].times),
        (1, ErrorKind::Unsupported, 1)
    );
}
