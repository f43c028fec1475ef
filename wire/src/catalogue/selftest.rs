//! Self-tests: experiments that misbehave on purpose, so the harness's fault handling can be proven
//! on real boots. Never part of a default run; select them by id.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SelfTest {
    /// The worker dereferences a null pointer.
    Crash,
    /// The worker spins forever.
    Hang,
    /// The worker writes bytes that are not a record onto the record channel.
    Garbage,
    /// The guest's PID 1 exits, which panics the kernel.
    ExitInit,
    /// The guest spins in PID 1 itself with the watchdog-free main loop, hanging the whole VM.
    HangInit,
}

impl SelfTest {
    pub(super) fn id_suffix(&self) -> String {
        serde_json::to_value(self)
            .expect("unit variant")
            .as_str()
            .expect("string")
            .to_string()
    }

    pub(super) fn describe(&self) -> String {
        match self {
            SelfTest::Crash => "the experiment's worker segfaults".into(),
            SelfTest::Hang => "the experiment's worker spins forever".into(),
            SelfTest::Garbage => {
                "the experiment's worker writes garbage onto the record channel".into()
            }
            SelfTest::ExitInit => "PID 1 exits, so the kernel panics".into(),
            SelfTest::HangInit => "PID 1 spins forever, so the whole guest hangs".into(),
        }
    }
}

pub(super) fn all() -> Vec<SelfTest> {
    vec![
        SelfTest::Crash,
        SelfTest::Hang,
        SelfTest::Garbage,
        SelfTest::ExitInit,
        SelfTest::HangInit,
    ]
}
