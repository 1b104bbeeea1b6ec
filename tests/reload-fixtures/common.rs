// The fixture's tasks, shared by both builds; `VERSION` tells them apart.

use std::time::Duration;

use serde_json::Value;
use toolbox_plugin_api::prelude::*;

/// Returns which build of the fixture runs it.
#[task(name = "fixture.version")]
#[derive(Default)]
pub struct Version;

impl Task for Version {
    type Args = Value;
    type Output = String;

    fn run(&self, _ctx: &Context<'_>, _args: Value) -> Result<String, TaskError> {
        Ok(VERSION.to_owned())
    }
}

/// Waits `ms` milliseconds (argument: a number), then returns which build ran it.
#[task(name = "fixture.wait")]
#[derive(Default)]
pub struct Wait;

impl Task for Wait {
    type Args = u64;
    type Output = String;

    fn run(&self, ctx: &Context<'_>, ms: u64) -> Result<String, TaskError> {
        ctx.sleep(Duration::from_millis(ms))?;
        Ok(VERSION.to_owned())
    }
}

export_plugin!(Version, Wait);
