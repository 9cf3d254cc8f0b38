//! In-memory twins of berth's I/O seams, for unit and component tests.
//! They model behaviour (labels, states, events, history) faithfully enough
//! for the agent's tests, record calls, and can be told to fail.

pub mod files;
pub mod hook_http;
pub mod host;
pub mod runtime;
pub mod store;
pub mod watch;

pub use files::FakeFiles;
pub use hook_http::{FakeAnswer, FakeHookHttp};
pub use host::FakeHost;
pub use runtime::FakeRuntime;
pub use store::MemStore;
pub use watch::{FakeWatcher, FakeWatcherHandle};
