//! Chat templates: the Jinja template a model carries in `tokenizer.chat_template` (or one the
//! caller supplies), rendered with minijinja for a list of role/content messages. Templates in
//! the wild call Python string methods (`.strip()`, `.startswith()`), which minijinja-contrib's
//! pycompat layer provides, and a few functions of the Hugging Face runtime, defined here:
//! `raise_exception(msg)` and `strftime_now(format)`.

use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::{Environment, ErrorKind, Value, context};

use crate::{Error, Result};

/// One chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatMessage<'a> {
    pub role: &'a str,
    pub content: &'a str,
}

/// Fuel a render starts with before what the messages add (`apply_template`).
const TEMPLATE_FUEL: u64 = 1_000_000;

/// Renders `template` for `messages`. `bos_token`/`eos_token` are the texts templates may use;
/// `add_generation_prompt` asks the template to open the assistant's turn. A template that
/// does not parse, or fails while rendering (including its own `raise_exception`), is an
/// `InvalidArg` error whose message says where and why.
pub fn apply_template(
    template: &str,
    messages: &[ChatMessage<'_>],
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
) -> Result<String> {
    let mut env = Environment::new();
    // A hostile file's template can ask for unbounded work in a few bytes (a list repeated
    // a hundred million times, then printed, joined or looped over: minutes and gigabytes).
    // Fuel bounds every instruction and every byte or item it makes or visits (minijinja's
    // `fuel`; 1 fuel = 1 instruction = 64 bytes); the budget grows with the messages, so a
    // long conversation renders and a runaway template fails in well under a second.
    let content = messages.iter().fold(0usize, |a, m| {
        a.saturating_add(m.content.len())
            .saturating_add(m.role.len())
    });
    let fuel = TEMPLATE_FUEL
        .saturating_add(1_000u64.saturating_mul(messages.len() as u64))
        .saturating_add((content as u64).saturating_mul(16));
    env.set_fuel(Some(fuel));
    // Printing a container walks all of it in one instruction, even after the output cap
    // refused the first bytes (a list repeated 50 million times: 4 s). Containers of more
    // than PRINTED_ITEMS items in all, nested ones included, are refused before printing.
    env.set_formatter(|out, state, value| {
        small(value)?;
        minijinja::escape_formatter(out, state, value)
    });
    // The filters that serialize a whole container, the same way.
    env.add_filter(
        "tojson",
        |v: &Value, indent: Option<Value>, args: minijinja::value::Kwargs| {
            small(v)?;
            minijinja::filters::tojson(v, indent, args)
        },
    );
    env.add_filter("string", |state: &minijinja::State, v: &Value| {
        small(v)?;
        minijinja::filters::string(state, v)
    });
    env.add_filter("pprint", |v: &Value| {
        small(v)?;
        Ok(minijinja::filters::pprint(v))
    });
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<Value, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        },
    );
    env.add_function("strftime_now", |format: String| {
        strftime(&format, now_utc())
    });
    let fail = |e: minijinja::Error| {
        let mut msg = format!("chat template: {e}");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            msg.push_str(&format!(": {s}"));
            source = s.source();
        }
        Error::InvalidArg(msg)
    };
    env.add_template("chat", template).map_err(fail)?;
    let msgs: Vec<Value> = messages
        .iter()
        .map(|m| context! { role => m.role, content => m.content })
        .collect();
    // Printing one huge value is a single instruction whose bytes are charged after it:
    // the output itself is capped as it is written, so that print stops at the cap.
    let mut out = Capped {
        buf: Vec::new(),
        cap: OUTPUT_CAP.saturating_add(content.saturating_mul(8)),
    };
    env.get_template("chat")
        .map_err(fail)?
        .render_captured_to(
            context! {
                messages => msgs,
                add_generation_prompt => add_generation_prompt,
                bos_token => bos_token,
                eos_token => eos_token,
            },
            &mut out,
        )
        .map_err(fail)?;
    String::from_utf8(out.buf)
        .map_err(|_| Error::InvalidArg("chat template: output is not UTF-8".into()))
}

/// Items (list elements, map entries, nested ones included) a printed value may hold.
const PRINTED_ITEMS: usize = 100_000;

/// Refuses a value whose containers hold more than `PRINTED_ITEMS` items in all.
fn small(v: &Value) -> std::result::Result<(), minijinja::Error> {
    let mut budget = PRINTED_ITEMS;
    if too_many_items(v, &mut budget) {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("a value of more than {PRINTED_ITEMS} items is printed or serialized"),
        ));
    }
    Ok(())
}

/// Whether `v`'s containers hold more than `budget` items in all; takes them from it. Reads
/// at most `budget` items (a container's length comes before its items).
fn too_many_items(v: &Value, budget: &mut usize) -> bool {
    use minijinja::value::ValueKind;
    if !matches!(
        v.kind(),
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable | ValueKind::Plain
    ) {
        return false;
    }
    let Some(n) = v.len() else {
        return false;
    };
    if n > *budget {
        return true;
    }
    *budget -= n;
    let Ok(items) = v.try_iter() else {
        return false;
    };
    for item in items.take(n) {
        if too_many_items(&item, budget) {
            return true;
        }
        if v.kind() == ValueKind::Map
            && let Ok(val) = v.get_item(&item)
            && too_many_items(&val, budget)
        {
            return true;
        }
    }
    false
}

/// Bytes a render may write before what the messages add (`apply_template`).
const OUTPUT_CAP: usize = 4 << 20;

/// A buffer that refuses to grow past `cap` bytes.
struct Capped {
    buf: Vec<u8>,
    cap: usize,
}

impl std::io::Write for Capped {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.buf.len().saturating_add(b.len()) > self.cap {
            return Err(std::io::Error::other(format!(
                "the output exceeds {} bytes",
                self.cap
            )));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Seconds since the epoch, UTC.
fn now_utc() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
];

/// The subset of C's strftime that chat templates use (dates in system prompts): %Y %y %m %d
/// %e %B %b %A %a %H %M %S %j %%. Other codes are an error rather than silently wrong text.
fn strftime(format: &str, secs: u64) -> std::result::Result<String, minijinja::Error> {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let weekday = WEEKDAYS[days.rem_euclid(7) as usize];
    let month_name = MONTHS[month as usize - 1];
    let yday = days - days_from_civil(year, 1, 1) + 1;
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year.rem_euclid(100))),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('e') => out.push_str(&format!("{day:2}")),
            Some('B') => out.push_str(month_name),
            Some('b') => out.push_str(&month_name[..3]),
            Some('A') => out.push_str(weekday),
            Some('a') => out.push_str(&weekday[..3]),
            Some('H') => out.push_str(&format!("{:02}", rem / 3600)),
            Some('M') => out.push_str(&format!("{:02}", rem / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", rem % 60)),
            Some('j') => out.push_str(&format!("{yday:03}")),
            Some('%') => out.push('%'),
            other => {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "strftime_now: unsupported format code %{}",
                        other.map_or(String::new(), String::from)
                    ),
                ));
            }
        }
    }
    Ok(out)
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_formats_known_dates() {
        // 2026-11-25 18:37:36 UTC is 1795631856 seconds after the epoch (a Wednesday).
        let t = 1_795_631_856;
        assert_eq!(
            strftime("%Y-%m-%d %H:%M:%S", t).unwrap(),
            "2026-11-25 18:37:36"
        );
        assert_eq!(
            strftime("%d %B %Y, %A (%a %b, day %j)", t).unwrap(),
            "25 November 2026, Wednesday (Wed Nov, day 329)"
        );
        assert_eq!(strftime("%y%%", 0).unwrap(), "70%");
        assert!(strftime("%Q", t).is_err());
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn templates_render_and_fail_clearly() {
        let msgs = [
            ChatMessage {
                role: "system",
                content: "Be brief.",
            },
            ChatMessage {
                role: "user",
                content: "  Hi  ",
            },
        ];
        let t = "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content.strip() }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}";
        assert_eq!(
            apply_template(t, &msgs, true, "<s>", "</s>").unwrap(),
            "<s>[system]Be brief.[user]Hi[assistant]"
        );
        assert_eq!(
            apply_template("{{ messages | tojson }}", &msgs[..1], false, "", "").unwrap(),
            r#"[{"role": "system", "content": "Be brief."}]"#
        );
        let e = apply_template(
            "{{ raise_exception('roles must alternate') }}",
            &msgs,
            false,
            "",
            "",
        )
        .unwrap_err();
        assert!(e.to_string().contains("roles must alternate"), "{e}");
        let e = apply_template("{% for %}", &msgs, false, "", "").unwrap_err();
        assert!(e.to_string().contains("chat template"), "{e}");
    }

    #[test]
    fn runaway_templates_run_out_of_fuel() {
        // Each of these took 0.7 to 51 s and up to 3.5 GB without a budget (the first one
        // is what the fuzzer found); each must now stop at one of the bounds (fuel, the
        // printed items, the output cap), in well under a second in a release build (the
        // fuzzer's 10 s limit an input holds it to that; a debug build under emulation took
        // 10 s for the join).
        let msgs = [ChatMessage {
            role: "user",
            content: "Hi",
        }];
        for t in [
            "{{ --5*messages*9960975 }}",
            "{{ messages * 99999999 }}",
            "{{ (messages * 99999999)|join }}",
            "{{ (messages * 9999999)|tojson }}",
            "{% for m in messages * 99999999 %}{% endfor %}",
            "{{ ('ab' * 50000000)|upper }}",
            "{{ (messages * 9999999)|sort|length }}",
            "{{ (messages * 9999999)|list|length }}",
            "{{ [1, messages * 99999999] }}",
            "{{ {'a': messages * 99999999} }}",
            "{{ (messages * 99999999)|string|length }}",
        ] {
            let e = apply_template(t, &msgs, false, "", "").unwrap_err();
            eprintln!("{t}: {e}");
            let m = e.to_string();
            assert!(
                matches!(e, Error::InvalidArg(_))
                    && (m.contains("fuel") || m.contains("items") || m.contains("exceeds")),
                "{t}: {e}"
            );
        }
        // A long conversation still renders: 2,000 messages of 1,000 bytes, each stripped,
        // checked and printed, the whole list also as JSON.
        let text = "x".repeat(1000);
        let many: Vec<ChatMessage> = (0..2000)
            .map(|i| ChatMessage {
                role: ["user", "assistant"][i % 2],
                content: &text,
            })
            .collect();
        let t = "{% for m in messages %}{% if m.role == 'user' %}[u]{% else %}[a]{% endif %}{{ m.content.strip() }}{% endfor %}{{ messages|tojson }}";
        let out = apply_template(t, &many, true, "", "").unwrap();
        assert!(out.len() > 4_000_000, "{}", out.len());
    }
}
