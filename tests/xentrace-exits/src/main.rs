//! `pvi-xentrace-exits TRACE CPU`: read the guest's log on standard input
//! (its `exits marks` lines), count the exits between its markers in the
//! xentrace file TRACE, on physical CPU CPU, and print one `exits key=…`
//! line per key, as pvi-sim and pvi-exit-counter make the kernel print.

use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [trace, cpu] = args.as_slice() else {
        eprintln!("usage: pvi-xentrace-exits TRACE CPU < guest.log");
        return ExitCode::from(2);
    };
    let Ok(cpu) = cpu.parse::<u32>() else {
        eprintln!("pvi-xentrace-exits: CPU must be a number, not {cpu:?}");
        return ExitCode::from(2);
    };
    let file = match std::fs::read(trace) {
        Ok(file) => file,
        Err(e) => {
            println!("pvi-xentrace-exits: {trace}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut log = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut log) {
        println!("pvi-xentrace-exits: the guest's log: {e}");
        return ExitCode::FAILURE;
    }
    let records = match pvi_xentrace_exits::records(&file) {
        Ok(records) => records,
        Err(why) => {
            println!(
                "pvi-xentrace-exits: {trace} is not a xentrace file: {}",
                why.0
            );
            return ExitCode::FAILURE;
        }
    };
    let intervals = pvi_xentrace_exits::intervals(&records, cpu);
    let keys = pvi_xentrace_exits::marks(&log);
    println!(
        "pvi-xentrace-exits: {} records, {} markers on CPU {cpu}, {} keys",
        records.len(),
        intervals.len(),
        keys.len()
    );
    for marks in &keys {
        println!("{}", pvi_xentrace_exits::line(marks, &intervals));
    }
    ExitCode::SUCCESS
}
