//! The rayon thread pool owned by the core (never rayon's global pool, so that it can be rebuilt in a
//! forked child and resized at run time).  Sized by `set_num_threads`, else `RAYON_NUM_THREADS`, else
//! the number of available cores.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rayon::{ThreadPool, ThreadPoolBuilder};

static POOL: Mutex<Option<Arc<ThreadPool>>> = Mutex::new(None);
/// Thread count chosen by `set_num_threads` (0: not chosen), kept across `fork`.
static CHOSEN: AtomicUsize = AtomicUsize::new(0);

fn default_threads() -> usize {
    let chosen = CHOSEN.load(Ordering::Relaxed);
    if chosen > 0 {
        return chosen;
    }
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
}

fn build(n: usize) -> Arc<ThreadPool> {
    let pool = ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("ntkgan-{i}"))
        .build()
        .unwrap_or_else(|_| {
            ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .expect("a 1-thread pool")
        });
    Arc::new(pool)
}

fn pool() -> Arc<ThreadPool> {
    let mut guard = POOL.lock().unwrap_or_else(|e| e.into_inner());
    guard
        .get_or_insert_with(|| build(default_threads()))
        .clone()
}

/// Run `f` inside the pool.
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    pool().install(f)
}

/// Use `n >= 1` threads from now on.
pub fn set_num_threads(n: usize) {
    let n = n.max(1);
    CHOSEN.store(n, Ordering::Relaxed);
    let mut guard = POOL.lock().unwrap_or_else(|e| e.into_inner());
    *guard = Some(build(n));
}

/// Number of threads of the pool.
pub fn num_threads() -> usize {
    pool().current_num_threads()
}

/// In a forked child the pool's worker threads do not exist: forget the inherited pool (never join or
/// drop it) so that the next call builds a fresh one.
pub fn reset_after_fork() {
    if let Ok(mut guard) = POOL.try_lock() {
        if let Some(old) = guard.take() {
            std::mem::forget(old);
        }
    }
}
