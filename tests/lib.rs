//! The integration tests live in `main.rs` (`cargo nextest run -p toolbox-tests`); this
//! library is empty and exists so that the package has a target cargo can check.
