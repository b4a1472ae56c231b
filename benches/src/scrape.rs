//! A Prometheus stand-in for benchmarks: a thread that reads a running
//! job's `/metrics` and `/status` once a second (as a scraper and
//! `kflow top` would) until stopped, counting the scrapes that answered.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A running scraper.
pub struct Scraper {
    stop: Arc<AtomicBool>,
    scrapes: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Scraper {
    /// Scrapes `addr` every `every` (connection errors, before the job
    /// listens or after it ended, are skipped).
    pub fn start(addr: SocketAddr, every: Duration) -> Scraper {
        let stop = Arc::new(AtomicBool::new(false));
        let scrapes = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, scrapes) = (stop.clone(), scrapes.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let metrics = kflow::cli::top::get(addr, "/metrics");
                    let status = kflow::cli::top::get(addr, "/status");
                    if metrics.is_ok_and(|(s, _)| s == 200) && status.is_ok_and(|(s, _)| s == 200) {
                        scrapes.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(every);
                    } else {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })
        };
        Scraper {
            stop,
            scrapes,
            thread: Some(thread),
        }
    }

    /// Stops scraping; how many scrapes answered.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.scrapes.load(Ordering::Relaxed)
    }
}

/// A loopback address with a port free right now.
///
/// # Errors
/// When no loopback port can be bound.
pub fn free_addr() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}
