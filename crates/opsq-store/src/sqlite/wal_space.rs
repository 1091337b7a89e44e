//! Room for the WAL, written once so commits overwrite it in place.
//!
//! Every acknowledged write waits for the WAL's sync (SQLite calls `fsync`). While the
//! WAL file grows, that sync also writes out the blocks newly allocated to it and the
//! file's new size; once SQLite restarts the WAL after a checkpoint, commits overwrite
//! blocks that already exist. On this project's machine a 4 KiB write and sync took
//! p50 0.117-0.165 ms as an overwrite against 0.198-0.250 ms as an append
//! (bench/RESULTS.md, step 17). A fresh or freshly reopened store would grow its WAL
//! through its first 1,000 pages of commits (5-7 pages per commit of one job);
//! writing the WAL's working size in zeros at open makes those commits overwrites
//! too.
//!
//! Why zeros after the WAL's end are safe: SQLite's recovery reads frames from the
//! start of the WAL and stops at the first frame whose salt or checksum does not
//! match, which a zero frame never does. The zeros go only after the file's current
//! end, and under the write lock, so no other connection can be appending frames
//! there at the same time.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use rusqlite::Connection;

use crate::StoreError;

/// WAL pages after which a commit checkpoints (SQLite's default, set explicitly
/// because the room written below is sized from it).
pub(super) const AUTOCHECKPOINT_PAGES: u64 = 1_000;
/// Pages of room beyond the checkpoint threshold: the commit that crosses it can
/// write more than one page past it.
const SLACK_PAGES: u64 = 256;
const WAL_HEADER_BYTES: u64 = 32;
const FRAME_HEADER_BYTES: u64 = 24;

/// Grows the WAL at `wal_path` to its working size with zeros, if it is smaller.
pub(super) fn ensure(conn: &Connection, wal_path: &Path) -> Result<(), StoreError> {
    let page_size: u64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let working_size =
        WAL_HEADER_BYTES + (AUTOCHECKPOINT_PAGES + SLACK_PAGES) * (page_size + FRAME_HEADER_BYTES);
    // Holding the write lock: nobody else appends frames while the zeros go in.
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let grown = grow_with_zeros(wal_path, working_size);
    conn.execute_batch("COMMIT")?;
    grown.map_err(|source| StoreError::Io { path: wal_path.display().to_string(), source })
}

fn grow_with_zeros(path: &Path, size: u64) -> std::io::Result<()> {
    let mut file = match OpenOptions::new().write(true).open(path) {
        Ok(file) => file,
        // No WAL yet (SQLite creates it lazily): the first commits will grow it.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    let mut len = file.metadata()?.len();
    if len >= size {
        return Ok(());
    }
    file.seek(SeekFrom::Start(len))?;
    let zeros = vec![0u8; 1 << 20];
    while len < size {
        let chunk = (size - len).min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..chunk])?;
        len += chunk as u64;
    }
    // The blocks, and the size that makes them part of the file, are on disk before
    // any commit relies on overwriting them.
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_a_short_file_with_zeros_after_what_it_holds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x-wal");
        std::fs::write(&path, b"frames").expect("write");
        grow_with_zeros(&path, 3_000_000).expect("grow");
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(bytes.len(), 3_000_000);
        assert_eq!(&bytes[..6], b"frames", "what the file held was overwritten");
        assert!(bytes[6..].iter().all(|&b| b == 0));
    }

    /// A crash leaves the WAL with committed frames and the zeros after them; a new
    /// connection must recover the frames (copying the files while the writer is
    /// still open is what a crash leaves on disk).
    #[test]
    fn committed_frames_before_the_zeros_survive_a_crash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("opsq.db");
        let conn = Connection::open(&db).expect("open");
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t (n INTEGER);",
        )
        .expect("setup");
        let wal = dir.path().join("opsq.db-wal");
        ensure(&conn, &wal).expect("room");
        let working_size = std::fs::metadata(&wal).expect("stat").len();
        assert!(working_size > 4_000_000, "the WAL was not grown: {working_size} bytes");
        for n in 0..50 {
            conn.execute("INSERT INTO t VALUES (?1)", [n]).expect("insert");
        }
        assert_eq!(std::fs::metadata(&wal).expect("stat").len(), working_size, "commits grew the WAL");

        let crashed = dir.path().join("crashed");
        std::fs::create_dir(&crashed).expect("mkdir");
        std::fs::copy(&db, crashed.join("opsq.db")).expect("copy db");
        std::fs::copy(&wal, crashed.join("opsq.db-wal")).expect("copy wal");
        let recovered = Connection::open(crashed.join("opsq.db")).expect("reopen");
        let (count, sum): (i64, i64) = recovered
            .query_row("SELECT count(*), sum(n) FROM t", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("read");
        assert_eq!((count, sum), (50, (0..50).sum::<i64>()));
    }

    #[test]
    fn leaves_a_long_file_and_a_missing_file_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x-wal");
        std::fs::write(&path, vec![7u8; 100]).expect("write");
        grow_with_zeros(&path, 10).expect("grow");
        assert_eq!(std::fs::read(&path).expect("read"), vec![7u8; 100]);
        grow_with_zeros(&dir.path().join("missing-wal"), 10).expect("a missing WAL is no error");
        assert!(!dir.path().join("missing-wal").exists(), "a WAL was created behind SQLite's back");
    }
}
