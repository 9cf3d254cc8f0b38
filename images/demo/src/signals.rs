//! Signal handling without an async runtime: the signals of interest are
//! blocked in every thread (the mask is inherited by threads spawned later) and
//! one dedicated thread takes them with `sigwait(2)`. No code runs in signal
//! context, so there are no async-signal-safety concerns.
//!
//! A no-op handler is also installed: the kernel drops signals whose disposition
//! is SIG_DFL for a PID namespace's init (the demo usually is PID 1).

#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;
use std::thread;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Hup,
    Int,
    Term,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Hup => "SIGHUP",
            Signal::Int => "SIGINT",
            Signal::Term => "SIGTERM",
        }
    }

    pub fn number(self) -> i32 {
        match self {
            Signal::Hup => libc::SIGHUP,
            Signal::Int => libc::SIGINT,
            Signal::Term => libc::SIGTERM,
        }
    }

    fn from_number(n: i32) -> Option<Signal> {
        match n {
            libc::SIGHUP => Some(Signal::Hup),
            libc::SIGINT => Some(Signal::Int),
            libc::SIGTERM => Some(Signal::Term),
            _ => None,
        }
    }
}

const ALL: [Signal; 3] = [Signal::Hup, Signal::Int, Signal::Term];

extern "C" fn noop(_: libc::c_int) {}

fn set() -> io::Result<libc::sigset_t> {
    let mut set = MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: `set` is valid writable memory for a sigset_t; sigemptyset initialises it.
    if unsafe { libc::sigemptyset(set.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    for s in ALL {
        // SAFETY: `set` was initialised by sigemptyset above.
        if unsafe { libc::sigaddset(set.as_mut_ptr(), s.number()) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: initialised above.
    Ok(unsafe { set.assume_init() })
}

/// Blocks SIGHUP/SIGINT/SIGTERM in the calling thread and installs no-op
/// handlers. Call from `main` before spawning any thread, then [`spawn`].
pub fn block() -> io::Result<()> {
    let set = set()?;
    // SAFETY: `set` is an initialised sigset_t; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    for s in ALL {
        let mut sa = MaybeUninit::<libc::sigaction>::zeroed();
        let handler: extern "C" fn(libc::c_int) = noop;
        // SAFETY: zeroed is a valid sigaction; we set the handler and an empty mask,
        // then pass a valid pointer to sigaction(2).
        let rc = unsafe {
            let p = sa.as_mut_ptr();
            (*p).sa_sigaction = handler as libc::sighandler_t;
            libc::sigemptyset(&mut (*p).sa_mask);
            (*p).sa_flags = libc::SA_RESTART;
            libc::sigaction(s.number(), p, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Starts the thread that receives the blocked signals and calls `on_signal`
/// for each, forever.
pub fn spawn(mut on_signal: impl FnMut(Signal) + Send + 'static) -> io::Result<()> {
    let set = set()?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: `set` is initialised and `sig` is a valid out pointer.
                let rc = unsafe { libc::sigwait(&set, &mut sig) };
                if rc != 0 {
                    eprintln!("sigwait failed: {}", io::Error::from_raw_os_error(rc));
                    return;
                }
                if let Some(s) = Signal::from_number(sig) {
                    on_signal(s);
                }
            }
        })?;
    Ok(())
}
