//! Build v2 of the reload fixture.

const VERSION: &str = "v2";

include!("../../common.rs");
