//! A source's pool of decoding threads: jobs (a file's blocks, a Kinesis
//! shard's batches) go out on a bounded queue, each thread works them with
//! its own copy of the source's ingest, and results come back on one
//! channel for the source thread to hand on in order.
//!
//! A thread that panics reports the panic as an error instead of leaving
//! a job that never comes back; the first error ends the thread.
//! [`InOrder`] puts the results back in the order the jobs went out.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::error::EngineError;

/// The channel from the decoding threads to the source thread; a job may
/// send messages of its own on it before its result (see the file
/// source's repeat checks).
pub type ToSource<M> = mpsc::Sender<Result<M, EngineError>>;

/// The decoding threads and the channels to them.
pub struct Pool<J, M> {
    jobs: Option<async_channel::Sender<J>>,
    results: mpsc::Receiver<Result<M, EngineError>>,
    threads: Vec<JoinHandle<()>>,
    /// The source's name, for errors.
    name: String,
}

impl<J: Send + 'static, M: Send + 'static> Pool<J, M> {
    /// Starts a thread per state in `decoders`, each running `work` on the
    /// jobs it takes, with room in the queue for `queue` jobs.
    ///
    /// # Errors
    /// A thread that cannot start.
    pub fn start<D, F>(
        name: &str,
        decoders: Vec<D>,
        queue: usize,
        work: F,
    ) -> Result<Pool<J, M>, EngineError>
    where
        D: Send + 'static,
        F: Fn(&mut D, J, &ToSource<M>) -> Result<M, EngineError> + Clone + Send + 'static,
    {
        let (jobs, taken) = async_channel::bounded::<J>(queue.max(1));
        let (done, results) = mpsc::channel();
        let mut threads = Vec::new();
        for (i, mut decoder) in decoders.into_iter().enumerate() {
            let (taken, done, work) = (taken.clone(), done.clone(), work.clone());
            let thread_name = format!("decode {name}#{i}");
            let thread = std::thread::Builder::new()
                .name(thread_name.clone())
                .spawn(move || {
                    while let Ok(job) = taken.recv_blocking() {
                        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                            work(&mut decoder, job, &done)
                        }))
                        .unwrap_or_else(|panic| {
                            Err(EngineError::from_panic(thread_name.clone(), panic.as_ref()))
                        });
                        let failed = result.is_err();
                        if done.send(result).is_err() || failed {
                            return;
                        }
                    }
                })
                .map_err(|e| {
                    EngineError::Panicked(
                        name.to_string(),
                        format!("could not start a decoding thread: {e}"),
                    )
                })?;
            threads.push(thread);
        }
        Ok(Pool {
            jobs: Some(jobs),
            results,
            threads,
            name: name.to_string(),
        })
    }

    /// Queues a job (waits while the queue is full).
    ///
    /// # Errors
    /// [`EngineError::Disconnected`] when the threads are gone.
    pub fn submit(&self, job: J) -> Result<(), EngineError> {
        match &self.jobs {
            Some(jobs) => jobs
                .send_blocking(job)
                .map_err(|_| EngineError::Disconnected(self.name.clone())),
            None => Err(EngineError::Disconnected(self.name.clone())),
        }
    }

    /// The next message from a thread, waiting for it.
    ///
    /// # Errors
    /// A job's error, or [`EngineError::Disconnected`] when the threads are
    /// gone.
    pub fn next(&self) -> Result<M, EngineError> {
        recv_yielding(&self.results).map_err(|_| EngineError::Disconnected(self.name.clone()))?
    }

    /// Stops taking jobs and waits for the threads.
    pub fn stop(mut self) {
        self.jobs.take();
        // Unblock threads waiting to hand a result on.
        drop(self.results);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// How many times a thread waiting for a message from another thread of
/// its source gives up its core before it sleeps ([`recv_yielding`]):
/// about 100-250 us of waiting when the core has nothing else to run.
const YIELDS: usize = 512;

/// Takes the next message of `channel`, giving up the core (not sleeping)
/// while none has come, [`YIELDS`] times, then waiting for it.
///
/// The source thread and its decoders wait for each other at every block
/// (a decoded block; a dedup source's verdicts), a few hundred
/// microseconds apart. A thread that sleeps there is woken by a futex
/// call from the sender, and on a virtual machine waking an idle vCPU
/// costs an interrupt to the hypervisor and tens of microseconds before
/// the thread runs; a thread that yields lets whatever waits for its core
/// run (often the very thread it waits for) and finds the message
/// without being woken. W1 made ~6,000 context switches a run, ~3,800
/// now: W1 3% faster, W5 6% (docs/performance/records.md, "Yielding
/// instead of sleeping").
///
/// # Errors
/// The channel's senders are all gone.
pub fn recv_yielding<T>(channel: &mpsc::Receiver<T>) -> Result<T, mpsc::RecvError> {
    for _ in 0..YIELDS {
        match channel.try_recv() {
            Ok(message) => return Ok(message),
            Err(mpsc::TryRecvError::Empty) => std::thread::yield_now(),
            Err(mpsc::TryRecvError::Disconnected) => return Err(mpsc::RecvError),
        }
    }
    channel.recv()
}

/// Results that come back in any order, handed on in their jobs' order
/// (`0, 1, 2, ...`).
#[derive(Debug)]
pub struct InOrder<T> {
    next: u64,
    ready: BTreeMap<u64, T>,
}

impl<T> Default for InOrder<T> {
    fn default() -> InOrder<T> {
        InOrder {
            next: 0,
            ready: BTreeMap::new(),
        }
    }
}

impl<T> InOrder<T> {
    /// The index of the next result to hand on: how many were.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Keeps the result of job `index`.
    pub fn put(&mut self, index: u64, result: T) {
        self.ready.insert(index, result);
    }

    /// The next result in order, once it came back.
    pub fn pop(&mut self) -> Option<T> {
        let result = self.ready.remove(&self.next)?;
        self.next += 1;
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_yielding_wait_gets_messages_sent_soon_late_and_never() {
        let (send, receive) = mpsc::channel();
        let late = send.clone();
        std::thread::spawn(move || {
            let _ = send.send(1);
            // Long after the yields ran out: the wait sleeps for it.
            std::thread::sleep(std::time::Duration::from_millis(50));
            let _ = late.send(2);
        });
        assert_eq!(recv_yielding(&receive), Ok(1));
        assert_eq!(recv_yielding(&receive), Ok(2));
        assert_eq!(
            recv_yielding(&receive),
            Err(mpsc::RecvError),
            "senders gone"
        );
    }

    #[test]
    fn results_go_on_in_their_jobs_order() {
        let mut order = InOrder::default();
        order.put(1, 'b');
        assert_eq!(order.pop(), None, "job 0 is not back yet");
        order.put(0, 'a');
        order.put(2, 'c');
        assert_eq!(
            (order.pop(), order.pop(), order.pop()),
            (Some('a'), Some('b'), Some('c'))
        );
        assert_eq!((order.pop(), order.next()), (None, 3));
    }
}
