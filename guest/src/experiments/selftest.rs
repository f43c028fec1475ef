//! Self-tests that misbehave on purpose, so the isolation around experiments is proven on real
//! boots. PID-1 self-tests are handled by the runner before any worker exists.

use wire::catalogue::SelfTest;

use super::{Facts, Lab, Measured};

pub fn run(test: SelfTest, lab: &Lab) -> Measured {
    match test {
        SelfTest::Crash => {
            // SAFETY: none; this is the point. A write through a null pointer raises SIGSEGV.
            unsafe { std::ptr::write_volatile(std::ptr::null_mut::<u64>(), 1) };
            unreachable!("a null write returned")
        }
        SelfTest::Hang => loop {
            std::hint::spin_loop();
        },
        SelfTest::Garbage => {
            let junk = b"\x00\xff@rph1 deadbeef {\"kind\":\"trailer\"\n\x1b[2J not a record\n";
            let _ = lab.channel.write(junk);
            Facts::default().done()
        }
        SelfTest::ExitInit | SelfTest::HangInit => {
            unreachable!("the runner handles PID-1 self-tests itself")
        }
    }
}
