//! What the six `toolbox.*` plugins share: exact amounts and dates, the exchange-rate
//! conversion rule in SQL, and the one-transaction rebuild of an output table.
//!
//! Amounts are integers of céntimos and rates integers of ten-thousandths in the
//! database (see the migrations); here they are parsed from and shown as decimals.

pub mod dates;
pub mod money;
pub mod rates;
pub mod rebuild;

pub use dates::{parse_date, today};
pub use money::{format_cents, parse_cents, parse_rate};
