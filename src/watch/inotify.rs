//! Following local files with inotify: a change to a secret's file makes
//! that secret due at once instead of at its next round. The directories
//! are watched, not the files, so an editor that writes a temporary file
//! and renames it over the original (a new inode) is seen too. Without
//! inotify (or for a file whose directory cannot be watched), the secret
//! is polled on its interval as before: that is the fallback.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::mpsc::Sender;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use super::Event;

/// Starts a thread that turns file events into [`Event::Changed`] for the
/// secrets (by index) whose file they concern. Returns how many files are
/// followed. The thread ends when the watcher is gone (a send fails).
pub(super) fn follow(files: Vec<(usize, PathBuf)>, events: Sender<Event>) -> usize {
    if files.is_empty() {
        return 0;
    }
    let inotify = match Inotify::init(InitFlags::IN_CLOEXEC) {
        Ok(inotify) => inotify,
        Err(errno) => {
            tracing::debug!(%errno, "no inotify; local files are polled on their interval");
            return 0;
        }
    };
    let flags = AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_ATTRIB;
    // Per watched directory: the file names in it and their secrets.
    let mut watched: BTreeMap<WatchDescriptor, Vec<(OsString, usize)>> = BTreeMap::new();
    let mut followed = 0;
    for (index, path) in files {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            continue;
        };
        match inotify.add_watch(dir, flags) {
            Ok(descriptor) => {
                watched
                    .entry(descriptor)
                    .or_default()
                    .push((name.to_owned(), index));
                followed += 1;
            }
            Err(errno) => tracing::debug!(
                dir = %dir.display(),
                %errno,
                "cannot watch the directory; its file is polled on its interval"
            ),
        }
    }
    if followed == 0 {
        return 0;
    }
    let spawned = std::thread::Builder::new()
        .name("hushbox-inotify".into())
        .spawn(move || {
            // Blocks in read(2) between events: no CPU while idle.
            while let Ok(batch) = inotify.read_events() {
                let mut due: Vec<usize> = batch
                    .iter()
                    .filter_map(|event| Some((watched.get(&event.wd)?, event.name.as_ref()?)))
                    .flat_map(|(names, name)| {
                        names
                            .iter()
                            .filter(move |(watched, _)| watched == name)
                            .map(|(_, index)| *index)
                    })
                    .collect();
                due.sort_unstable();
                due.dedup();
                if !due.is_empty() && events.send(Event::Changed(due)).is_err() {
                    return;
                }
            }
        });
    if spawned.is_err() {
        return 0;
    }
    followed
}
