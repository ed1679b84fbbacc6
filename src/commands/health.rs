//! `hushbox health`: exit 0 when the watcher of this manifest keeps every
//! secret fresh, 1 with one line of reason on stderr otherwise. Reads the
//! status file the watcher keeps; fetches nothing.

use std::time::SystemTime;

use super::{Outcome, Session};
use crate::exit;
use crate::watch::status::Status;

pub(super) fn health(session: &Session) -> Outcome {
    let plan = session.plan(None, None, false)?;
    let verdict =
        Status::read(&plan.watch.status_file).and_then(|status| status.health(SystemTime::now()));
    match verdict {
        Ok(()) => Ok(exit::OK),
        Err(reason) => {
            eprintln!("hushbox: unhealthy: {reason}");
            Ok(exit::FAILURE)
        }
    }
}
