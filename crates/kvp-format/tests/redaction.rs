//! Card data and keys never show in errors, problems, `Debug` or `Display`: every type of the
//! crate that can hold line data is formatted here with a line full of secrets, through the
//! public API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kvp_format::{
    AsyncReader, AsyncWriter, CompleteFile, FileName, Reader, Record, RequestLine, ResponseLine,
    ValidateOptions, Validator, ViewBuf, Writer, check_response, pairs, validate, validate_bytes,
};

const CARD: &str = "4111111111111111";
const MASKED: &str = "411111******1111";
/// Every secret of [`SECRET_LINE`], as it must never be shown.
const SECRETS: &[&str] = &[CARD, "987", "sk_live_merchant", "021000021", "000123456789"];
/// A REQUEST line carrying every kind of secret, plus a card number used as a key.
const SECRET_LINE: &str = "xIndex=0&xSequenceNumber=7&xKey=sk_live_merchant&xCommand=cc%3Asale\
    &xCardNum=4111111111111111&xCVV=987&xRouting=021000021&xAccount=000123456789\
    &xMagstripe=%25B4111111111111111%5EDOE%5E2512%3F&x4111111111111111=1";

/// No secret in `shown`, neither as text nor as the byte list a derived `Debug` of a
/// `Vec<u8>` or `&[u8]` would print (`[52, 49, 49, ...]`).
fn assert_clean(shown: &str) {
    for secret in SECRETS {
        assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        let bytes = format!("{:?}", secret.as_bytes());
        let bytes = bytes.trim_start_matches('[').trim_end_matches(']');
        assert!(
            !shown.contains(bytes),
            "{secret} leaked as bytes in {shown}"
        );
    }
}

fn name() -> FileName {
    FileName::parse("REQUEST_7.KVP").unwrap()
}

#[test]
fn card_number_as_key_is_masked_in_reader_errors() {
    let line = format!("xIndex=0&xSequenceNumber=7&{CARD}&{CARD}\n");
    let mut reader = Reader::new(line.as_bytes()).with_name("REQUEST_7.KVP");
    let mut rec = Record::new();
    let e = reader.read_record(&mut rec).unwrap_err();
    let shown = format!("{e} {e:?} {e:#?} {}", e.message());
    assert_clean(&shown);
    assert!(
        e.to_string()
            .contains(&format!("key \"{MASKED}\" appears more than once")),
        "{e}"
    );
    assert_eq!(e.position().unwrap().key.as_deref(), Some(MASKED));

    // A key that is not UTF-8 after decoding is named (lossily, then masked) too.
    let line = format!("xIndex=0&{CARD}%FF=1\n");
    let e = Reader::new(line.as_bytes())
        .read_record(&mut rec)
        .unwrap_err();
    let shown = format!("{e} {e:?} {}", e.message());
    assert_clean(&shown);
    assert!(shown.contains(MASKED), "{shown}");

    // Normal keys stay readable.
    let e = Reader::new(&b"xCustom01=1&xCustom01=2\n"[..])
        .read_record(&mut rec)
        .unwrap_err();
    assert!(e.to_string().contains("key xCustom01 appears"), "{e}");
}

#[test]
fn card_number_as_key_is_masked_in_validate_problems() {
    let data = format!(
        "xIndex=0&xSequenceNumber=7&xKey=k&xCommand=cc:sale&{CARD}&{CARD}\n\
         xIndex=1&xSequenceNumber=7&xKey=k&xCommand=cc:sale&x{CARD}%FF=2\n\
         xIndex=2&xSequenceNumber={CARD}&xKey=k&xCommand=cc:sale\n"
    );
    let report = validate_bytes(
        &name(),
        "REQUEST_7.KVP",
        data.as_bytes(),
        &Default::default(),
    );
    assert_eq!(report.total_problems, 3, "{:#?}", report.problems);
    let json = serde_json::to_string(&report.problems).unwrap();
    let shown: String = report
        .problems
        .iter()
        .map(|p| format!("{p} {p:?} {:?} ", p.key))
        .collect();
    let shown = format!("{shown} {json} {report:?}");
    assert_clean(&shown);
    assert_eq!(report.problems[0].key.as_deref(), Some(MASKED));
    assert!(
        report.problems[0]
            .to_string()
            .contains(&format!("key \"{MASKED}\" appears more than once")),
        "{}",
        report.problems[0]
    );
    assert!(shown.contains(&format!("x{MASKED}")), "{shown}");

    // RESPONSE: a card number as xIndex, answered twice, then checked against the REQUEST.
    let response = FileName::parse("RESPONSE_7.KVP").unwrap();
    let data = format!("xIndex={CARD}&xSequenceNumber=7\nxIndex={CARD}&xSequenceNumber=7\n");
    let report = validate_bytes(
        &response,
        "RESPONSE_7.KVP",
        data.as_bytes(),
        &Default::default(),
    );
    assert_eq!(report.total_problems, 1, "{:#?}", report.problems);
    let checked = check_response(&name(), 1, &report);
    assert_eq!(checked.len(), 2, "{checked:#?}");
    let shown = format!(
        "{:?} {checked:?} {}",
        report.problems,
        serde_json::to_string(&checked).unwrap()
    );
    assert_clean(&shown);
    assert!(shown.contains(MASKED), "{shown}");

    let problems = validate(
        &name(),
        b"xIndex=0&xSequenceNumber=7&xKey=k&xCommand=c&xCustom01=1&xCustom01=2\n",
        &ValidateOptions::default(),
    );
    assert_eq!(problems[0].key.as_deref(), Some("xCustom01"));
}

#[test]
fn records_and_typed_lines_mask_everything() {
    let mut rec = Record::new();
    Reader::new(SECRET_LINE.as_bytes())
        .read_record(&mut rec)
        .unwrap();
    let line = RequestLine::from_record(rec.clone(), 1).unwrap();
    let shown = format!(
        "{rec:?} {rec:#?} {rec} {} {line:?} {:?}",
        rec.masked(),
        rec.iter()
    );
    assert_clean(&shown);
    assert!(shown.contains(MASKED), "{shown}");

    // RESPONSE and COMPLETE lines keep unknown pairs (echoed secrets) in a `Record`.
    let extra = SECRET_LINE.replace("xIndex=0&xSequenceNumber=7&", "");
    let response = format!("xIndex=0&xSequenceNumber=7&xResult=A&{extra}\n");
    let mut reader = Reader::new(response.as_bytes());
    let mut typed = reader.typed::<ResponseLine>();
    let response: ResponseLine = typed.next().unwrap().unwrap();
    let complete = format!("xResult=A&xStatus=Completed&xSequenceNumber=7&{extra}\n");
    let complete = CompleteFile::parse(complete.as_bytes()).unwrap();
    let shown = format!("{response:?} {complete:?} {typed:?}");
    assert_clean(&shown);
    assert!(shown.contains(MASKED), "{shown}");

    let mut validator = Validator::new(name(), &ValidateOptions::default());
    validator.feed(format!("{SECRET_LINE}\n").as_bytes());
    assert_clean(&format!("{validator:?}"));
    let report = validator.finish();
    assert_clean(&format!("{report:?}"));
}

#[test]
fn line_views_and_pair_iterators_show_no_raw_line() {
    // `%C3%A9` makes the view decode components into its scratch buffer.
    let line = format!("{SECRET_LINE}&xcardnum=4111111111111111%C3%A9&xName=Jo%20Smith");
    let mut buf = ViewBuf::new();
    let view = buf.view(line.as_bytes()).unwrap();
    let shown = format!("{view:?} {view:#?}");
    assert_clean(&shown);
    assert!(shown.contains(MASKED), "{shown}");
    assert!(shown.contains("\"xName\": \"Jo Smith\""), "{shown}");
    assert!(shown.contains(&format!("bytes: {}", line.len())), "{shown}");
    assert_clean(&format!("{buf:?} {buf:#?}"));

    let mut it = pairs(line.as_bytes());
    it.next();
    assert_clean(&format!("{it:?} {it:#?}"));
}

#[test]
fn readers_and_writers_show_sizes_not_buffers() {
    // A small buffer makes the line span refills, so the reader copies it into its own buffer;
    // the second line is still in the inner reader.
    let data = format!("{SECRET_LINE}\n{SECRET_LINE}\n");
    let inner = std::io::BufReader::with_capacity(16, data.as_bytes());
    let mut reader = Reader::new(inner).with_name("REQUEST_7.KVP");
    let mut rec = Record::new();
    assert!(reader.read_record(&mut rec).unwrap());
    let records = format!("{:?}", reader.records());
    let shown = format!("{reader:?} {reader:#?} {records}");
    assert_clean(&shown);
    assert!(
        shown.contains("REQUEST_7.KVP") && shown.contains("line: 1"),
        "{shown}"
    );

    let mut writer = Writer::new(Vec::new());
    writer.write_record(&rec).unwrap();
    let shown = format!("{writer:?} {writer:#?}");
    assert_clean(&shown);
    assert!(shown.contains("lines: 1"), "{shown}");
}

#[tokio::test]
async fn async_readers_and_writers_show_sizes_not_buffers() {
    let data = format!("{SECRET_LINE}\n{SECRET_LINE}\n");
    let mut reader = AsyncReader::new(data.as_bytes()).with_name("REQUEST_7.KVP");
    let mut rec = Record::new();
    assert!(reader.read_record(&mut rec).await.unwrap());
    let shown = format!("{reader:?} {reader:#?}");
    assert_clean(&shown);
    assert!(
        shown.contains("REQUEST_7.KVP") && shown.contains("line: 1"),
        "{shown}"
    );

    let mut writer = AsyncWriter::new(Vec::new());
    writer.write_record(&rec).await.unwrap();
    let shown = format!("{writer:?} {writer:#?}");
    assert_clean(&shown);
    assert!(shown.contains("lines: 1"), "{shown}");
}
