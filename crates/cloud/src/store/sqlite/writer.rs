//! The single writer of a SQLite store, with group commit.
//!
//! SQLite has one writer at a time, and each commit in WAL mode with `synchronous=FULL` costs an
//! fsync. One thread owns the write connection: it takes every write waiting in its queue (up
//! to [`MAX_BATCH`]), runs each inside its own savepoint of one transaction, commits once, and
//! only then answers each caller. A caller therefore still returns only after its write is
//! durable, but many callers share one commit, one fsync and one wake-up of this thread.
//!
//! A write that fails is rolled back to its savepoint alone; the others in the batch commit. If
//! SQLite aborts the whole transaction (disk full, I/O error), every write of the batch is
//! answered with the error and nothing after it runs, so no caller is told "done" for a write
//! that did not commit, nor "failed" for one that did.

use super::super::{StoreError, StoreFaults};
use rusqlite::Connection;
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::sync::{mpsc, oneshot};

/// Writes waiting for the writer; callers wait for room when it is full.
const QUEUE: usize = 4096;
/// Most writes committed together.
const MAX_BATCH: usize = 512;

/// One write: runs in the batch's transaction, is answered after the commit.
trait Job: Send {
    /// Runs the write; false asks for its changes to be rolled back.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller with the write's result and the commit's.
    fn finish(self: Box<Self>, commit: Result<(), StoreError>);
}

struct Pending<F, T, E> {
    work: Option<F>,
    result: Option<Result<T, E>>,
    reply: oneshot::Sender<Result<T, E>>,
}

impl<F, T, E> Job for Pending<F, T, E>
where
    F: FnOnce(&Connection) -> Result<T, E> + Send,
    T: Send,
    E: From<StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        let result = work(conn);
        let keep = result.is_ok();
        self.result = Some(result);
        keep
    }

    fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
        let answer = match (self.result, commit) {
            (Some(Ok(v)), Ok(())) => Ok(v),
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(_)) | None, Err(e)) => Err(e.into()),
            // Not run although the batch committed: cannot happen, but never claim success.
            (None, Ok(())) => Err(StoreError::Commit("write was not run".into()).into()),
        };
        // The caller may have gone (its request was cancelled); the write stands regardless.
        let _ = self.reply.send(answer);
    }
}

/// The handle to the writer thread. Dropping it (with the store) closes the queue; the thread
/// finishes the writes already queued and ends.
pub(super) struct Writer {
    jobs: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread on `conn`; `faults` (tests only) can make its commits fail.
    pub(super) fn start(conn: Connection, faults: Arc<StoreFaults>) -> Result<Self, StoreError> {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, queue, &faults))
            .map_err(|e| StoreError::Open(format!("cannot start the SQLite writer: {e}")))?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs `work` in the next batch and returns its result once the batch is committed. A
    /// `work` returning an error has its changes rolled back.
    pub(super) async fn write<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Pending {
            work: Some(work),
            result: None,
            reply,
        });
        let jobs = self.jobs.as_ref().ok_or(StoreError::Closed)?;
        jobs.send(job).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the thread after the queued writes; it is not joined here,
        // since this may run on an async worker, and a commit can take a while.
        self.jobs.take();
        self.thread.take();
    }
}

fn run(conn: Connection, mut queue: mpsc::Receiver<Box<dyn Job>>, faults: &StoreFaults) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let outcome = commit_batch(&conn, &mut batch, faults);
        for job in batch.drain(..) {
            job.finish(match &outcome {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Commit(e.clone())),
            });
        }
    }
}

/// Runs every job of the batch in one transaction and commits it.
fn commit_batch(
    conn: &Connection,
    batch: &mut [Box<dyn Job>],
    faults: &StoreFaults,
) -> Result<(), String> {
    exec(conn, "BEGIN IMMEDIATE")?;
    for job in batch.iter_mut() {
        if let Err(e) = exec(conn, "SAVEPOINT job") {
            rollback(conn);
            return Err(e);
        }
        let keep = job.run(conn);
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (I/O error, disk full): the batch is
            // lost and the writes not run yet must not run outside it.
            return Err("the database aborted the transaction".into());
        }
        let end = if keep {
            exec(conn, "RELEASE job")
        } else {
            exec(conn, "ROLLBACK TO job").and_then(|()| exec(conn, "RELEASE job"))
        };
        if let Err(e) = end {
            rollback(conn);
            return Err(e);
        }
    }
    if faults.commit_fails() {
        rollback(conn);
        return Err("database or disk is full (injected fault)".into());
    }
    if let Err(e) = exec(conn, "COMMIT") {
        rollback(conn);
        return Err(e);
    }
    Ok(())
}

fn exec(conn: &Connection, sql: &str) -> Result<(), String> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn rollback(conn: &Connection) {
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
}
