//! Build v1 of the reload fixture.

const VERSION: &str = "v1";

include!("../../common.rs");
