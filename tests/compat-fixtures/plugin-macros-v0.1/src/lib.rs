//! `#[task(...)]`: declares a toolbox task from a struct and its doc comment.
//!
//! Re-exported by `toolbox-plugin-api`, whose docs describe the arguments. Everything
//! that can be checked at compile time is: the name's form, durations, unknown keys.

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, DeriveInput, LitInt, LitStr};

#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    let input = parse_macro_input!(item as DeriveInput);
    let mut args = TaskArgs::default();
    let parser = syn::meta::parser(|meta| args.parse(meta));
    parse_macro_input!(attr with parser);
    match expand(&input, args) {
        Ok(tokens) => tokens.into(),
        Err(error) => {
            let error = error.to_compile_error();
            quote!(#input #error).into()
        }
    }
}

#[derive(Default)]
struct TaskArgs {
    name: Option<LitStr>,
    queue: Option<LitStr>,
    max_retries: Option<LitInt>,
    retry_backoff: Option<LitStr>,
    retry_backoff_max: Option<LitStr>,
    time_limit: Option<LitStr>,
    schedule: Option<LitStr>,
}

impl TaskArgs {
    fn parse(&mut self, meta: syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
        let key = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        match key.as_str() {
            "name" => self.name = Some(meta.value()?.parse()?),
            "queue" => self.queue = Some(meta.value()?.parse()?),
            "max_retries" => self.max_retries = Some(meta.value()?.parse()?),
            "retry_backoff" => self.retry_backoff = Some(meta.value()?.parse()?),
            "retry_backoff_max" => self.retry_backoff_max = Some(meta.value()?.parse()?),
            "time_limit" => self.time_limit = Some(meta.value()?.parse()?),
            "schedule" => self.schedule = Some(meta.value()?.parse()?),
            _ => {
                return Err(meta.error(
                    "unknown task argument; expected one of: name, queue, max_retries, \
                     retry_backoff, retry_backoff_max, time_limit, schedule",
                ))
            }
        }
        Ok(())
    }
}

fn expand(input: &DeriveInput, args: TaskArgs) -> syn::Result<proc_macro2::TokenStream> {
    let name = args.name.ok_or_else(|| {
        syn::Error::new(
            input.ident.span(),
            "#[task] needs a name: #[task(name = \"domain.task\")]",
        )
    })?;
    check_task_name(&name.value()).map_err(|why| syn::Error::new(name.span(), why))?;

    let description = doc_comment(input);
    if description.is_empty() {
        return Err(syn::Error::new(
            input.ident.span(),
            "a task needs a doc comment: it is the description /tasks/available shows",
        ));
    }
    let queue = match &args.queue {
        Some(q) if q.value().is_empty() => {
            return Err(syn::Error::new(q.span(), "empty queue name"))
        }
        Some(q) => quote!(#q),
        None => quote!(::toolbox_plugin_api::sdk::TaskSpec::DEFAULT.queue),
    };
    let max_retries = match &args.max_retries {
        Some(n) => {
            n.base10_parse::<u32>()?;
            quote!(#n)
        }
        None => quote!(::toolbox_plugin_api::sdk::TaskSpec::DEFAULT.max_retries),
    };
    let duration = |lit: &Option<LitStr>,
                    default: proc_macro2::TokenStream|
     -> syn::Result<proc_macro2::TokenStream> {
        match lit {
            Some(lit) => {
                let ms = parse_duration_ms(&lit.value())
                    .map_err(|why| syn::Error::new(lit.span(), why))?;
                Ok(quote!(::core::time::Duration::from_millis(#ms)))
            }
            None => Ok(default),
        }
    };
    let retry_backoff = duration(
        &args.retry_backoff,
        quote!(::toolbox_plugin_api::sdk::TaskSpec::DEFAULT.retry_backoff),
    )?;
    let retry_backoff_max = duration(
        &args.retry_backoff_max,
        quote!(::toolbox_plugin_api::sdk::TaskSpec::DEFAULT.retry_backoff_max),
    )?;
    let time_limit = match &args.time_limit {
        Some(_) => {
            let d = duration(&args.time_limit, quote!())?;
            quote!(::core::option::Option::Some(#d))
        }
        None => quote!(::core::option::Option::None),
    };
    let schedule = match &args.schedule {
        Some(s) => {
            let fields = s.value().split_whitespace().count();
            if !(5..=6).contains(&fields) {
                return Err(syn::Error::new(
                    s.span(),
                    format!(
                        "a cron schedule has 5 fields (or 6 with seconds), this one has {fields}"
                    ),
                ));
            }
            quote!(::core::option::Option::Some(#s))
        }
        None => quote!(::core::option::Option::None),
    };

    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        #input

        impl #impl_generics ::toolbox_plugin_api::sdk::TaskInfo for #ident #ty_generics #where_clause {
            const SPEC: ::toolbox_plugin_api::sdk::TaskSpec = ::toolbox_plugin_api::sdk::TaskSpec {
                name: #name,
                description: #description,
                queue: #queue,
                max_retries: #max_retries,
                retry_backoff: #retry_backoff,
                retry_backoff_max: #retry_backoff_max,
                time_limit: #time_limit,
                schedule: #schedule,
            };
        }
    })
}

/// `<domain>.<task>`, each part snake_case starting with a letter.
fn check_task_name(name: &str) -> Result<(), String> {
    let valid_part = |p: &str| {
        p.starts_with(|c: char| c.is_ascii_lowercase())
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    match name.split_once('.') {
        Some((domain, task)) if valid_part(domain) && valid_part(task) => Ok(()),
        _ => Err(format!(
            "task name {name:?} is not of the form <domain>.<task> in snake_case, e.g. \"toolbox.kpi_acumulado\""
        )),
    }
}

/// The doc comment's lines, with the one space rustdoc puts after `///` removed.
fn doc_comment(input: &DeriveInput) -> String {
    let lines: Vec<String> = input
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        })
        .flat_map(|s| {
            s.lines()
                .map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    lines.join("\n").trim().to_owned()
}

/// "250ms", "30s", "5m", "2h" → milliseconds.
fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| {
        format!("duration {text:?} has no unit: write e.g. \"500ms\", \"30s\", \"5m\" or \"1h\"")
    })?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("duration {text:?} does not start with a whole number"))?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(format!(
                "duration {text:?} has unit {unit:?}; use ms, s, m or h"
            ))
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("duration {text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (text, expected) in [
            ("250ms", Ok(250)),
            ("30s", Ok(30_000)),
            ("5m", Ok(300_000)),
            ("2h", Ok(7_200_000)),
        ] {
            assert_eq!(parse_duration_ms(text), expected, "{text}");
        }
        for bad in ["30", "s", "10 days", "5x", "-1s", ""] {
            assert!(parse_duration_ms(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn task_names() {
        for good in ["toolbox.kpi_acumulado", "background.noop", "a.b2"] {
            assert!(check_task_name(good).is_ok(), "{good}");
        }
        for bad in [
            "noop",
            "toolbox.",
            ".noop",
            "Toolbox.noop",
            "toolbox.kpi-acumulado",
            "a.b.c",
            "1a.b",
        ] {
            assert!(check_task_name(bad).is_err(), "{bad} should be refused");
        }
    }
}
