//! The golden Rust of the fixture IDL, built as the `pvi-fixture-sdk` crate,
//! behaves as its IDL says. (`cargo xtask test` also builds it with every
//! interface feature, warnings denied.)

use pvi_fixture_sdk::generated::{alpha, types::*};

#[test]
fn fixture_types_have_their_declared_layout() {
    assert_eq!(core::mem::size_of::<packed_rec>(), 7);
    assert_eq!(core::mem::size_of::<gappy>(), 32);
    assert_eq!(core::mem::offset_of!(gappy, tail), 20);
    assert_eq!(Mode::B.bits(), 1 << 9);
    assert_eq!(Level::from_raw(2), Some(Level::High));
    assert_eq!(Level::from_raw(3), None);
    assert_eq!(pvi_fixture_sdk::generated::INTERFACE_VERSION, "1.2.0");
}

#[test]
fn fixture_constants_and_error_mapping() {
    assert_eq!(alpha::ALPHA_HC_KICK, 3);
    assert_eq!(alpha::ALPHA_MSR_CLOCK, 0x4b00_0001);
    assert_eq!(alpha::AlphaFeatures::ALPHA_F_KICK.bits(), 1 << 3);
    assert_eq!(alpha::error_kind(38), Some(ErrorKind::Unsupported));
    assert_eq!(alpha::error(7).kind, ErrorKind::Failed);
    assert_eq!(alpha::error(38).origin, ErrorOrigin::Alpha(38));
    // Gated constants are still in the tables, by value, for decoding.
    assert!(alpha::CONSTANTS.contains(&("ALPHA_MAGIC", 0xa1fa)));
}

mod chain_forms {
    //! The chain forms an ABI needs beyond one register call, run on the
    //! host through the fixture's generated chains: a hypercall once per
    //! byte (`each`), a backend's own `routine`, and a region whose
    //! address the platform supplies (`from platform`).

    use pvi_fixture_sdk::generated::alpha::{self, Features, Hypercalls, Instruction, Steps};
    use pvi_fixture_sdk::generated::ops::{NativeRoutines, PvOps};
    use pvi_fixture_sdk::generated::types::*;
    use std::cell::RefCell;
    use std::ptr::NonNull;

    thread_local! {
        /// What each mechanism received, in order: `("putc", b"h")`, …
        static SEEN: RefCell<Vec<(&'static str, Vec<u8>)>> = const { RefCell::new(Vec::new()) };
    }

    fn saw(what: &'static str, bytes: &[u8]) {
        SEEN.with(|s| s.borrow_mut().push((what, bytes.to_vec())));
    }

    /// Everything the mechanisms received, joined per mechanism.
    fn seen() -> Vec<(&'static str, Vec<u8>)> {
        let all = SEEN.with(|s| std::mem::take(&mut *s.borrow_mut()));
        let mut joined: Vec<(&'static str, Vec<u8>)> = Vec::new();
        for (what, bytes) in all {
            match joined.last_mut() {
                Some((w, b)) if *w == what => b.extend(bytes),
                _ => joined.push((what, bytes)),
            }
        }
        joined
    }

    struct Native;
    impl NativeRoutines for Native {
        fn arm_native<P: PvOps + ?Sized>(
            _uses: pvi_fixture_sdk::generated::ops::ArmNativeUses<'_, P>,
            _deadline: Nanos,
        ) -> Result<(), PvError> {
            Ok(())
        }
        fn stop_native(_level: Level) {}
        fn put_native(data: &[u8]) {
            saw("native", data);
        }
        fn now_native() -> Nanos {
            Nanos(1)
        }
        unsafe fn poke_native(address: u64, value: u64) {
            // SAFETY: the op's contract: `address` is writable, aligned
            // and covered by no reference.
            unsafe { (address as *mut u64).write(value) };
            saw("native poke", &value.to_le_bytes());
        }
    }

    /// An Alpha whose `putc` refuses from byte `refuse_at` on, whose
    /// routine refuses when `routine_refuses`, and whose platform region
    /// is `window` (if any).
    struct Mock {
        features: Features,
        refuse_at: usize,
        routine_refuses: bool,
        window: Option<NonNull<alpha::alpha_window>>,
        sent: std::cell::Cell<usize>,
    }

    impl Mock {
        fn new() -> Mock {
            Mock {
                features: Features::NONE,
                refuse_at: usize::MAX,
                routine_refuses: false,
                window: None,
                sent: std::cell::Cell::new(0),
            }
        }
    }

    // SAFETY: a host mock: the one hypercall its chains make (`putc`) is
    // overridden, and its region, when it has one, is a live box.
    unsafe impl Steps for Mock {
        type Native = Native;
        fn features(&self) -> &Features {
            &self.features
        }
        fn fell_back(&self, _op: pvi_fixture_sdk::generated::ops::Op, _step: usize, _e: PvError) {}
        fn hypercalls(&self) -> Hypercalls {
            Hypercalls::new(Instruction::Vmcall)
        }
        unsafe fn alpha_hc_putc(&self, c: u8) -> Result<(), PvError> {
            if self.sent.get() >= self.refuse_at {
                return Err(alpha::error(38));
            }
            self.sent.set(self.sent.get() + 1);
            saw("putc", &[c]);
            Ok(())
        }
        fn alpha_window(&self) -> Option<NonNull<alpha::alpha_window>> {
            self.window
        }
        fn now_step2(&self) -> Result<Nanos, PvError> {
            Err(PvError::new(ErrorKind::Unsupported, ErrorOrigin::Native))
        }
        fn put_by_alpha(&self, data: &[u8]) -> Result<(), PvError> {
            if self.routine_refuses {
                return Err(PvError::new(ErrorKind::Unsupported, ErrorOrigin::Native));
            }
            saw("routine", data);
            Ok(())
        }
        unsafe fn poke_by_alpha(&self, address: u64, value: u64) -> Result<(), PvError> {
            if self.routine_refuses {
                return Err(PvError::new(ErrorKind::Unsupported, ErrorOrigin::Native));
            }
            // SAFETY: the op's contract, which this method shares.
            unsafe { (address as *mut u64).write(value + 1) };
            Ok(())
        }
    }

    /// An `unsafe` op is an `unsafe fn` at every layer (the trait, the
    /// chain, the `Steps` method, the native routine), and its chain runs
    /// as any other: the backend's routine, then native.
    #[test]
    fn an_unsafe_op_walks_its_chain_under_its_contract() {
        let mut cell = 0u64;
        let address = core::ptr::addr_of_mut!(cell) as u64;
        // SAFETY: `cell` is a live, aligned u64 that no reference covers
        // while the call runs.
        unsafe { alpha::Paravirt(Mock::new()).poke(address, 41) };
        assert_eq!(cell, 42, "the backend's routine served it");
        let refusing = Mock {
            routine_refuses: true,
            ..Mock::new()
        };
        // SAFETY: as above.
        unsafe { alpha::Paravirt(refusing).poke(address, 7) };
        assert_eq!(cell, 7, "native served it after the routine refused");
        assert_eq!(seen(), [("native poke", 7u64.to_le_bytes().to_vec())]);
    }

    #[test]
    fn each_byte_is_one_hypercall() {
        alpha::Paravirt(Mock::new()).put(b"hello");
        assert_eq!(seen(), [("putc", b"hello".to_vec())]);
    }

    #[test]
    fn a_refused_byte_and_the_rest_go_to_the_next_step_once() {
        let mock = Mock {
            refuse_at: 2,
            ..Mock::new()
        };
        alpha::Paravirt(mock).put(b"hello");
        assert_eq!(
            seen(),
            [("putc", b"he".to_vec()), ("routine", b"llo".to_vec())]
        );
        let mock = Mock {
            refuse_at: 3,
            routine_refuses: true,
            ..Mock::new()
        };
        alpha::Paravirt(mock).put(b"hello");
        assert_eq!(
            seen(),
            [("putc", b"hel".to_vec()), ("native", b"lo".to_vec())]
        );
        // The boot report's "served by" record saw the routine (step 2) and
        // native (0) answer, as they did.
        let put = pvi_fixture_sdk::record::served::summary()
            .find(|(op, _)| *op == "put")
            .map(|(_, bits)| bits);
        assert_eq!(put.map(|b| b & 0b101), Some(0b101), "{put:?}");
    }

    /// What `plan` (the boot report), `CHAINS` (the matrix) and `pvi
    /// explain` say of the new forms is what the chains above ran.
    #[test]
    fn the_plan_the_matrix_and_explain_name_the_new_forms() {
        use pvi_fixture_sdk::generated::ops::Op;
        let plan = alpha::plan(&Features::NONE);
        let first = |op| plan.iter().find(|(o, _)| *o == op).map(|(_, s)| *s);
        assert_eq!(
            first(Op::Put),
            Some((1, "hypercall ALPHA_HC_PUTC(each data)"))
        );
        assert_eq!(
            first(Op::Now),
            Some((1, "shared alpha_window.now from platform"))
        );
        assert!(alpha::CHAINS.contains(&("put", "hypercall → routine → native")));
        assert!(alpha::CHAINS.contains(&("now", "shared → shared → native")));
        let fixture = pvi_tests::root().join("tests/codegen-fixture");
        let (_, model) = pvi_codegen::check_paths(&[fixture]).unwrap();
        let text = pvi_codegen::explain::explain(&model.unwrap(), "put").unwrap();
        for line in [
            "  1. hypercall ALPHA_HC_PUTC(each data)   [hypercall 6, once per byte of data]",
            "  2. routine put_by_alpha   [the backend's own code: a `Steps` method]",
            "  1. hypercall GAMMA_PUTC(each data)   [hypercall 11, once per byte of data]",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
    }

    #[test]
    fn the_platform_region_is_read_where_the_platform_put_it() {
        let window = Box::into_raw(Box::new(alpha::alpha_window {
            magic: 0,
            now: 5_000,
            ..alpha::alpha_window::ZERO
        }));
        let ops = alpha::Paravirt(Mock {
            window: NonNull::new(window),
            ..Mock::new()
        });
        assert_eq!(ops.now(), Nanos(5_000));
        // Zero: not provided; no region: the chain goes on to native.

        // SAFETY: `window` is the live box made above; the hypervisor's
        // writes are plain writes here.
        unsafe { (*window).now = 0 };
        assert_eq!(ops.now(), Nanos(1));
        assert_eq!(alpha::Paravirt(Mock::new()).now(), Nanos(1));
        // SAFETY: made by Box::into_raw above, and no longer used.
        drop(unsafe { Box::from_raw(window) });
    }

    #[test]
    fn a_misaligned_region_is_not_read() {
        // A region at an odd address: its u64 field cannot be loaded in one
        // aligned access, so the step falls back instead.
        let mut bytes = vec![0u64; 4];
        let base = bytes.as_mut_ptr().cast::<u8>().wrapping_add(1);
        // SAFETY: 31 bytes of the buffer remain after `base`, enough for the
        // 16-byte region; writes are unaligned-safe.
        unsafe {
            base.add(8).cast::<u64>().write_unaligned(7_000);
        }
        let ops = alpha::Paravirt(Mock {
            window: NonNull::new(base.cast()),
            ..Mock::new()
        });
        assert_eq!(ops.now(), Nanos(1));
    }
}
