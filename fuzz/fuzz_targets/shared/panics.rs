//! The decode targets' panic hook: a panic the decoder contains (`catch_unwind` turns it into
//! an error) is reported, not a crash; `LMQ_FUZZ_STRICT_PANICS=1` keeps the default hook so
//! every panic stops the run.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Panics reported on stderr; later ones are counted but not printed.
const PANICS_PRINTED_MAX: usize = 20;
static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Installs the hook; `decoder` names the function whose containment is under test.
pub fn tolerate_contained_panics(decoder: &'static str) {
    if std::env::var_os("LMQ_FUZZ_STRICT_PANICS").is_some_and(|value| value != "0") {
        return;
    }
    std::panic::set_hook(Box::new(move |info| {
        let seen = PANICS.fetch_add(1, Ordering::Relaxed);
        if seen < PANICS_PRINTED_MAX {
            eprintln!(
                "lmq-fuzz: panic #{} (a crash only if {decoder} lets it out): {info}",
                seen + 1
            );
        }
    }));
}
