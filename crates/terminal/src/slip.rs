//! A print job (`Terminal.Print`) as the paper would show it, in plain text of the printer's
//! width, for an operator watching the simulated printer.
//!
//! Plain text cannot be bold or large, so the renderer does what it can: bold text is printed
//! in capitals, large text (double width) letter-spaced at half as many characters a line;
//! text is wrapped at the paper's width and aligned. A QR code or a barcode is a placeholder
//! line naming its data (an EAN-13 of twelve digits with its check digit added, as the
//! printer would print it); a feed is blank lines, a cut a dashed line.

use protocol::action::{ean13_check_digit, Align, PrintJob, PrintLine, Symbology};

/// The slip as lines of at most `columns` characters, joined by newlines.
pub fn render(job: &PrintJob, columns: u16) -> String {
    let width = usize::from(columns).max(8);
    let mut out: Vec<String> = Vec::new();
    for line in &job.lines {
        match line {
            PrintLine::Text {
                text,
                bold,
                align,
                large,
            } => {
                let text = if *bold || *large {
                    text.to_uppercase()
                } else {
                    text.clone()
                };
                // Double width: each character takes two columns.
                let room = if *large { width / 2 } else { width };
                if text.is_empty() {
                    out.push(String::new());
                }
                for part in wrap(&text, room) {
                    let part = if *large { spaced(&part) } else { part };
                    out.push(aligned(&part, *align, width));
                }
            }
            PrintLine::Qr { data } => {
                for part in wrap(&format!("[QR: {data}]"), width) {
                    out.push(aligned(&part, Align::Centre, width));
                }
            }
            PrintLine::Barcode { symbology, data } => {
                let shown = match symbology {
                    Symbology::Code128 => format!("[CODE128: {data}]"),
                    Symbology::Ean13 => format!("[EAN13: {}]", full_ean13(data)),
                };
                for part in wrap(&shown, width) {
                    out.push(aligned(&part, Align::Centre, width));
                }
            }
            PrintLine::Feed { lines } => {
                out.extend(std::iter::repeat_n(String::new(), usize::from(*lines)));
            }
            PrintLine::Cut => out.push(format!("{:-^width$}", " cut ")),
        }
    }
    out.join("\n")
}

/// An EAN-13 with its check digit (twelve digits get theirs added).
fn full_ean13(data: &str) -> String {
    let digits: Vec<u32> = data.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.len() == 12 {
        format!("{data}{}", ean13_check_digit(&digits))
    } else {
        data.to_string()
    }
}

/// `text` cut into pieces of at most `width` characters, at spaces where it can (also the
/// simulator's receipt header and footer).
pub(crate) fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut out = Vec::new();
    let mut current = String::new();
    for word in text.split(' ') {
        let mut word: String = word.to_string();
        loop {
            let used = current.chars().count();
            let len = word.chars().count();
            let sep = usize::from(used > 0);
            if used + sep + len <= width {
                if sep == 1 {
                    current.push(' ');
                }
                current.push_str(&word);
                break;
            }
            if used > 0 {
                out.push(std::mem::take(&mut current));
                continue;
            }
            // A word longer than a line is cut.
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            out.push(head);
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Double width: a space after every character.
fn spaced(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn aligned(s: &str, align: Align, width: usize) -> String {
    let pad = width.saturating_sub(s.chars().count());
    match align {
        Align::Left => s.to_string(),
        Align::Centre => format!("{}{s}", " ".repeat(pad / 2)),
        Align::Right => format!("{}{s}", " ".repeat(pad)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str, bold: bool, align: Align, large: bool) -> PrintLine {
        PrintLine::Text {
            text: t.into(),
            bold,
            align,
            large,
        }
    }

    #[test]
    fn renders_every_kind_of_line() {
        let job = PrintJob {
            lines: vec![
                text("Cafe", true, Align::Centre, false),
                text("Big", false, Align::Left, true),
                text("right", false, Align::Right, false),
                PrintLine::Feed { lines: 2 },
                PrintLine::Qr {
                    data: "https://e.x/1".into(),
                },
                PrintLine::Barcode {
                    symbology: Symbology::Ean13,
                    data: "400638133393".into(),
                },
                PrintLine::Barcode {
                    symbology: Symbology::Code128,
                    data: "AB-1".into(),
                },
                PrintLine::Cut,
            ],
        };
        let slip = render(&job, 24);
        let lines: Vec<&str> = slip.split('\n').collect();
        assert_eq!(
            lines,
            vec![
                "          CAFE",
                "B I G",
                "                   right",
                "",
                "",
                "  [QR: https://e.x/1]",
                " [EAN13: 4006381333931]",
                "    [CODE128: AB-1]",
                "--------- cut ----------",
            ]
        );
    }

    #[test]
    fn wraps_at_the_paper_width() {
        let job = PrintJob {
            lines: vec![
                text(
                    "The quick brown fox jumps over the lazy dog",
                    false,
                    Align::Left,
                    false,
                ),
                text(&"x".repeat(25), false, Align::Left, false),
                text("Large text wraps sooner", false, Align::Centre, true),
            ],
        };
        let slip = render(&job, 10);
        for line in slip.lines() {
            assert!(line.chars().count() <= 10, "{line:?}");
        }
        assert!(slip.starts_with("The quick\nbrown fox\njumps over\nthe lazy\ndog\n"));
        assert!(slip.contains("xxxxxxxxxx\nxxxxxxxxxx\nxxxxx\n"), "{slip}");
        assert!(slip.contains("L A R G E"), "{slip}");
    }
}
