use super::*;

use std::collections::HashSet;
use std::path::PathBuf;

use proptest::prelude::*;

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

fn key() -> QuizKey {
    QuizKey::derive(b"test secret")
}

fn bank(size: u32) -> Bank {
    Bank::new(key(), "campaign-1", size)
}

/// HMAC-SHA256 the way the `hmac` docs do it, to check `keyed_hmac`.
fn reference_hmac(key: &[u8], fields: &[&[u8]]) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap();
    for field in fields {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field);
    }
    mac.finalize().into_bytes().into()
}

// ---------------------------------------------------------------- keys ----

#[test]
fn keyed_hmac_equals_hmac_for_every_key_length() {
    for len in [0usize, 1, 16, 31, 32, 33, 63, 64, 65, 128, 200] {
        let key: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let mut ours = keyed_hmac(&key);
        ours.update(b"message");
        let mut theirs = <HmacSha256 as Mac>::new_from_slice(&key).unwrap();
        theirs.update(b"message");
        assert_eq!(
            ours.finalize().into_bytes(),
            theirs.finalize().into_bytes(),
            "key length {len}"
        );
    }
}

#[test]
fn derive_is_hmac_of_the_label_keyed_by_the_secret() {
    for secret in [&b""[..], b"s", b"test secret", &[0xab; 100]] {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(secret).unwrap();
        mac.update(b"seckill quiz key v1");
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(QuizKey::derive(secret).0, expected);
    }
}

#[test]
fn derive_is_deterministic_and_secret_dependent() {
    assert_eq!(QuizKey::derive(b"a").0, QuizKey::derive(b"a").0);
    assert_ne!(QuizKey::derive(b"a").0, QuizKey::derive(b"b").0);
    // Domain separation: the key is not the secret, nor its plain hash.
    let secret = [7u8; 32];
    let derived = QuizKey::derive(&secret).0;
    assert_ne!(derived, secret);
    assert_ne!(derived[..], Sha256::digest(secret)[..]);
}

#[test]
fn key_debug_hides_the_key() {
    let text = format!("{:?}", key());
    assert_eq!(text, "QuizKey(..)");
    let bank_text = format!("{:?}", bank(3));
    assert!(bank_text.contains("QuizKey(..)"), "{bank_text}");
    assert!(!bank_text.contains(&format!("{:?}", key().0)));
}

#[test]
fn fields_cannot_shift_into_each_other() {
    let k = key();
    let tag = |fields: &[&[u8]]| k.mac(fields).finalize().into_bytes();
    assert_ne!(tag(&[b"ab", b"c"]), tag(&[b"a", b"bc"]));
    assert_ne!(tag(&[b"ab", b""]), tag(&[b"", b"ab"]));
    assert_ne!(tag(&[b"abc"]), tag(&[b"abc", b""]));
    assert_eq!(
        tag(&[b"x", b"yz"])[..],
        reference_hmac(&k.0, &[b"x", b"yz"])[..]
    );
}

// ------------------------------------------------------------ alphabet ----

#[test]
fn alphabet_is_drawable_and_free_of_lookalikes() {
    let supported: HashSet<char> = Captcha::new().supported_chars().into_iter().collect();
    let symbols: Vec<char> = ALPHABET.chars().collect();
    assert_eq!(symbols.len(), 21);
    let unique: HashSet<char> = symbols.iter().copied().collect();
    assert_eq!(unique.len(), symbols.len(), "duplicates in the alphabet");
    for c in &symbols {
        assert!(supported.contains(c), "{c} is not in the captcha font");
        assert!(
            c.is_ascii_uppercase() || c.is_ascii_digit(),
            "{c} is not upper case"
        );
    }
    for lookalike in "0O1IL5S2Z8BGQDU".chars() {
        assert!(!unique.contains(&lookalike), "{lookalike} is a lookalike");
    }
}

// ----------------------------------------------------------- questions ----

/// The answer as the crate docs specify it, computed independently.
fn reference_answer(key: &QuizKey, campaign: &str, index: u32) -> String {
    let alphabet = ALPHABET.as_bytes();
    let mut answer = String::new();
    let mut block = 0u32;
    while answer.len() < 4 {
        let tag = reference_hmac(
            &key.0,
            &[
                b"answer",
                campaign.as_bytes(),
                &index.to_be_bytes(),
                &block.to_be_bytes(),
            ],
        );
        for b in tag {
            if answer.len() < 4 && b < 252 {
                answer.push(alphabet[usize::from(b) % 21] as char);
            }
        }
        block += 1;
    }
    answer
}

#[test]
fn questions_follow_the_documented_construction() {
    let bank = bank(50);
    for index in 0..50 {
        let question = bank.question(index);
        assert_eq!(question.index, index);
        assert_eq!(
            question.answer,
            reference_answer(&key(), "campaign-1", index)
        );
        let tag = reference_hmac(&key().0, &[b"image", b"campaign-1", &index.to_be_bytes()]);
        assert_eq!(
            question.image_file,
            format!("{}.png", hex::encode(&tag[..16]))
        );
    }
}

#[test]
fn questions_are_deterministic() {
    let a = bank(100);
    let b = Bank::new(QuizKey::derive(b"test secret"), "campaign-1", 100);
    for index in 0..100 {
        assert_eq!(a.question(index), b.question(index));
        assert_eq!(a.question(index), a.question(index));
    }
    // The size is not an input: a bigger bank starts with the same questions.
    assert_eq!(bank(10).question(3), bank(1000).question(3));
}

#[test]
fn names_are_32_lowercase_hex_and_distinct_across_a_bank() {
    let bank = bank(1000);
    let mut names = HashSet::new();
    for index in 0..bank.size() {
        let name = bank.question(index).image_file;
        let stem = name.strip_suffix(".png").expect("a .png name");
        assert_eq!(stem.len(), 32, "{name}");
        assert!(
            stem.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{name}"
        );
        assert!(names.insert(name), "duplicate name at {index}");
    }
    assert_eq!(names.len(), 1000);
}

#[test]
fn answers_are_four_alphabet_characters() {
    let bank = bank(1000);
    for index in 0..bank.size() {
        let answer = bank.question(index).answer;
        assert_eq!(answer.len(), ANSWER_LEN, "{answer}");
        assert!(answer.chars().all(|c| ALPHABET.contains(c)), "{answer}");
        assert_eq!(answer, answer.to_ascii_uppercase());
    }
}

#[test]
fn answers_use_every_symbol_about_equally() {
    let bank = bank(5000);
    let mut counts = [0u32; 128];
    for index in 0..bank.size() {
        for b in bank.question(index).answer.bytes() {
            counts[usize::from(b)] += 1;
        }
    }
    // 20 000 symbols over 21: about 952 each, standard deviation about 30.
    for c in ALPHABET.bytes() {
        let n = counts[usize::from(c)];
        assert!((800..=1100).contains(&n), "{} drawn {n} times", c as char);
    }
}

#[test]
fn other_campaigns_and_keys_give_other_questions() {
    let base = bank(200);
    let other_campaign = Bank::new(key(), "campaign-2", 200);
    let other_key = Bank::new(QuizKey::derive(b"other secret"), "campaign-1", 200);
    // A prefix of the campaign name is another campaign.
    let prefix = Bank::new(key(), "campaign-", 200);
    for other in [&other_campaign, &other_key, &prefix] {
        let names: HashSet<String> = (0..200).map(|i| base.question(i).image_file).collect();
        let mut same_answer = 0;
        for index in 0..200 {
            let (a, b) = (base.question(index), other.question(index));
            assert!(!names.contains(&b.image_file), "name collision at {index}");
            if a.answer == b.answer {
                same_answer += 1;
            }
        }
        // Chance of a coincidence is 1 in 194 481 per question.
        assert!(same_answer <= 1, "{same_answer} equal answers");
    }
}

#[test]
fn answer_and_name_differ_per_index() {
    let bank = bank(1000);
    let answers: HashSet<String> = (0..1000).map(|i| bank.question(i).answer).collect();
    // 1000 draws from 194 481: a handful of collisions at most.
    assert!(answers.len() > 990, "{} distinct answers", answers.len());
}

// ----------------------------------------------------------- answering ----

#[test]
fn correct_answers_are_accepted_case_insensitively_and_trimmed() {
    let bank = bank(20);
    for index in 0..20 {
        let answer = bank.question(index).answer;
        let lower = answer.to_lowercase();
        let mixed: String = answer
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 2 == 0 {
                    c.to_ascii_lowercase()
                } else {
                    c
                }
            })
            .collect();
        for given in [
            answer.clone(),
            lower.clone(),
            mixed,
            format!("  {answer}  "),
            format!("\t{lower}\n"),
            format!("\r\n{answer}\u{3000}"),
        ] {
            assert!(bank.is_correct(index, &given), "{given:?} for {answer}");
        }
    }
}

#[test]
fn wrong_answers_are_refused() {
    let bank = bank(20);
    let answer = bank.question(5).answer;
    let other = bank.question(6).answer;
    let mut one_off = answer.clone().into_bytes();
    one_off[3] = if one_off[3] == b'A' { b'C' } else { b'A' };
    let one_off = String::from_utf8(one_off).unwrap();
    let inner_space = format!("{} {}", &answer[..2], &answer[2..]);
    for given in [
        "",
        "   ",
        &answer[..3],
        &format!("{answer}A"),
        &format!("A{answer}"),
        &one_off,
        &inner_space,
        &answer.chars().rev().collect::<String>(),
        "ÄÖÜ",
        "\u{0}\u{0}\u{0}\u{0}",
    ] {
        if given == answer {
            continue; // a palindrome answer reversed
        }
        assert!(
            !bank.is_correct(5, given),
            "{given:?} accepted for {answer}"
        );
    }
    if other != answer {
        assert!(!bank.is_correct(5, &other));
    }
}

#[test]
fn indexes_outside_the_bank_are_never_correct() {
    let bank = bank(10);
    let beyond = bank.question(10).answer;
    assert!(!bank.is_correct(10, &beyond));
    assert!(!bank.is_correct(u32::MAX, &bank.question(u32::MAX).answer));
    assert!(!Bank::new(key(), "campaign-1", 0).is_correct(0, &bank.question(0).answer));
}

// ----------------------------------------------------------- rendering ----

fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.starts_with(PNG_SIGNATURE), "not a PNG");
    assert_eq!(&png[12..16], b"IHDR");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    (width, height)
}

#[test]
fn render_produces_a_png_of_the_documented_size() {
    let bank = bank(3);
    for index in 0..3 {
        let png = bank.try_render_png(index).unwrap();
        assert_eq!(png_size(&png), IMAGE_SIZE);
        assert!(png.ends_with(&[0xae, 0x42, 0x60, 0x82]), "no IEND chunk");
    }
    let png = bank.render_png(0);
    assert_eq!(png_size(&png), IMAGE_SIZE);
}

#[test]
fn every_alphabet_symbol_can_be_drawn() {
    // The font must have every symbol, or renders would fail.
    for c in ALPHABET.chars() {
        let mut image = Captcha::new();
        image.set_chars(&[c]).add_char();
        assert_eq!(image.chars(), vec![c]);
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn expected_names(bank: &Bank) -> Vec<String> {
    let mut names: Vec<String> = (0..bank.size())
        .map(|i| bank.question(i).image_file)
        .collect();
    names.sort();
    names
}

/// Runs `render_all`, recording every progress call.
fn render_recorded(
    bank: &Bank,
    dir: &Path,
    threads: usize,
) -> (io::Result<RenderReport>, Vec<(u32, u32)>) {
    let calls = Mutex::new(Vec::new());
    let record = |done: u32, total: u32| calls.lock().unwrap().push((done, total));
    let result = bank.render_all(dir, threads, &record);
    (result, calls.into_inner().unwrap())
}

fn assert_progress_counts_to(calls: &[(u32, u32)], total: u32) {
    let expected: Vec<(u32, u32)> = (1..=total).map(|done| (done, total)).collect();
    assert_eq!(calls, expected);
}

#[test]
fn render_all_writes_every_image_then_keeps_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested").join("images");
    let bank = bank(24);

    let (report, calls) = render_recorded(&bank, &dir, 3);
    assert_eq!(
        report.unwrap(),
        RenderReport {
            written: 24,
            kept: 0
        }
    );
    assert_progress_counts_to(&calls, 24);
    assert_eq!(
        files_in(&dir),
        expected_names(&bank),
        "stray or missing files"
    );
    let first: Vec<Vec<u8>> = expected_names(&bank)
        .iter()
        .map(|name| fs::read(dir.join(name)).unwrap())
        .collect();
    for png in &first {
        assert_eq!(png_size(png), IMAGE_SIZE);
    }

    let (report, calls) = render_recorded(&bank, &dir, 2);
    assert_eq!(
        report.unwrap(),
        RenderReport {
            written: 0,
            kept: 24
        }
    );
    assert_progress_counts_to(&calls, 24);
    let second: Vec<Vec<u8>> = expected_names(&bank)
        .iter()
        .map(|name| fs::read(dir.join(name)).unwrap())
        .collect();
    assert_eq!(first, second, "kept files were rewritten");
}

#[test]
fn render_all_fills_in_missing_and_empty_files_only() {
    let tmp = tempfile::tempdir().unwrap();
    let bank = bank(10);
    bank.render_all(tmp.path(), 1, &|_, _| {}).unwrap();
    let names: Vec<String> = (0..10).map(|i| bank.question(i).image_file).collect();
    fs::remove_file(tmp.path().join(&names[2])).unwrap();
    fs::remove_file(tmp.path().join(&names[7])).unwrap();
    fs::write(tmp.path().join(&names[4]), b"").unwrap();
    let kept_before = fs::read(tmp.path().join(&names[0])).unwrap();

    let (report, calls) = render_recorded(&bank, tmp.path(), 4);
    assert_eq!(
        report.unwrap(),
        RenderReport {
            written: 3,
            kept: 7
        }
    );
    assert_progress_counts_to(&calls, 10);
    assert_eq!(files_in(tmp.path()), expected_names(&bank));
    assert_eq!(fs::read(tmp.path().join(&names[0])).unwrap(), kept_before);
    for name in [&names[2], &names[4], &names[7]] {
        assert_eq!(
            png_size(&fs::read(tmp.path().join(name)).unwrap()),
            IMAGE_SIZE
        );
    }
}

#[test]
fn render_all_with_zero_threads_uses_one() {
    let tmp = tempfile::tempdir().unwrap();
    let bank = bank(3);
    let (report, calls) = render_recorded(&bank, tmp.path(), 0);
    assert_eq!(report.unwrap().written, 3);
    assert_progress_counts_to(&calls, 3);
}

#[test]
fn render_all_with_more_threads_than_images() {
    let tmp = tempfile::tempdir().unwrap();
    let bank = bank(2);
    let (report, calls) = render_recorded(&bank, tmp.path(), 16);
    assert_eq!(report.unwrap().written, 2);
    assert_progress_counts_to(&calls, 2);
    assert_eq!(files_in(tmp.path()), expected_names(&bank));
}

#[test]
fn render_all_of_an_empty_bank_reports_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("empty");
    let (report, calls) = render_recorded(&bank(0), &dir, 2);
    assert_eq!(
        report.unwrap(),
        RenderReport {
            written: 0,
            kept: 0
        }
    );
    assert_eq!(calls, vec![(0, 0)]);
    assert!(dir.is_dir(), "the directory is created even when empty");
}

#[test]
fn render_all_refuses_a_file_as_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let not_a_dir = tmp.path().join("file");
    fs::write(&not_a_dir, b"x").unwrap();
    let (report, calls) = render_recorded(&bank(3), &not_a_dir, 2);
    assert!(report.is_err());
    assert!(calls.is_empty());
}

#[test]
fn render_all_stops_at_the_first_error() {
    let tmp = tempfile::tempdir().unwrap();
    let bank = bank(10);
    // A directory where image 0 goes: its rename fails.
    let blocked: PathBuf = tmp.path().join(bank.question(0).image_file);
    fs::create_dir(&blocked).unwrap();
    fs::write(blocked.join("inside"), b"x").unwrap();

    let (report, calls) = render_recorded(&bank, tmp.path(), 1);
    assert!(report.is_err());
    assert!(calls.is_empty(), "progress after the failed first image");
    // Nothing after the failure, and no temporary file left behind.
    assert_eq!(files_in(tmp.path()), vec![bank.question(0).image_file]);
}

// -------------------------------------------------------------- tokens ----

const USER: &str = "buyer-1";
const CAMPAIGN: &str = "campaign-1";

fn token() -> String {
    issue(
        &key(),
        USER,
        CAMPAIGN,
        42,
        1_700_000_000_123,
        0x0123_4567_89ab_cdef,
    )
}

#[test]
fn token_round_trip() {
    let token = token();
    let claim = verify(&key(), &token, USER, CAMPAIGN).unwrap();
    assert_eq!(claim.question, 42);
    assert_eq!(claim.issued_ms, 1_700_000_000_123);
    assert_eq!(claim.id.len(), 64);
    assert!(token.ends_with(&claim.id));
}

#[test]
fn token_format_is_as_documented() {
    let token = token();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 5);
    assert_eq!(parts[0], "v1");
    assert_eq!(parts[1], "42");
    assert_eq!(parts[2], "1700000000123");
    assert_eq!(parts[3], "0123456789abcdef");
    let tag = reference_hmac(
        &key().0,
        &[
            b"quiz token v1",
            USER.as_bytes(),
            CAMPAIGN.as_bytes(),
            &42u32.to_be_bytes(),
            &1_700_000_000_123u64.to_be_bytes(),
            &0x0123_4567_89ab_cdefu64.to_be_bytes(),
        ],
    );
    assert_eq!(parts[4], hex::encode(tag));
    // Small nonces are zero-padded to 16 digits.
    let small = issue(&key(), USER, CAMPAIGN, 0, 0, 1);
    assert!(small.starts_with("v1.0.0.0000000000000001."), "{small}");
    assert!(verify(&key(), &small, USER, CAMPAIGN).is_ok());
}

#[test]
fn extreme_values_round_trip_within_the_length_limit() {
    let token = issue(&key(), USER, CAMPAIGN, u32::MAX, u64::MAX, u64::MAX);
    assert_eq!(token.len(), 116);
    assert!(token.len() <= MAX_TOKEN_LEN);
    let claim = verify(&key(), &token, USER, CAMPAIGN).unwrap();
    assert_eq!((claim.question, claim.issued_ms), (u32::MAX, u64::MAX));
}

#[test]
fn token_ids_are_unique_per_token() {
    let ids: HashSet<String> = (0..100u64)
        .map(|nonce| {
            let token = issue(&key(), USER, CAMPAIGN, 1, 5, nonce);
            verify(&key(), &token, USER, CAMPAIGN).unwrap().id
        })
        .collect();
    assert_eq!(ids.len(), 100);
    let a = verify(
        &key(),
        &issue(&key(), USER, CAMPAIGN, 1, 5, 9),
        USER,
        CAMPAIGN,
    )
    .unwrap();
    let b = verify(
        &key(),
        &issue(&key(), USER, CAMPAIGN, 2, 5, 9),
        USER,
        CAMPAIGN,
    )
    .unwrap();
    assert_ne!(a.id, b.id);
}

/// Replaces part `index` of the token.
fn with_part(token: &str, index: usize, value: &str) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[index] = value;
    parts.join(".")
}

#[test]
fn every_altered_field_is_a_bad_signature() {
    let token = token();
    let mac = token.split('.').nth(4).unwrap().to_string();
    let mut flipped_mac = mac.clone().into_bytes();
    flipped_mac[10] = if flipped_mac[10] == b'0' { b'1' } else { b'0' };
    let flipped_mac = String::from_utf8(flipped_mac).unwrap();
    let altered = [
        with_part(&token, 1, "43"),
        with_part(&token, 1, "0"),
        with_part(&token, 2, "1700000000124"),
        with_part(&token, 2, "1800000000123"),
        with_part(&token, 3, "0123456789abcdee"),
        with_part(&token, 3, "ffffffffffffffff"),
        with_part(&token, 4, &flipped_mac),
        with_part(&token, 4, &"0".repeat(64)),
    ];
    for altered in &altered {
        assert_eq!(
            verify(&key(), altered, USER, CAMPAIGN),
            Err(QuizError::BadSignature),
            "{altered}"
        );
    }
}

#[test]
fn another_user_campaign_or_key_is_a_bad_signature() {
    let token = token();
    let checks = [
        verify(&key(), &token, "buyer-2", CAMPAIGN),
        verify(&key(), &token, "", CAMPAIGN),
        verify(&key(), &token, "buyer-1 ", CAMPAIGN),
        verify(&key(), &token, USER, "campaign-2"),
        verify(&key(), &token, USER, ""),
        verify(&QuizKey::derive(b"other secret"), &token, USER, CAMPAIGN),
        // User and campaign swapped.
        verify(&key(), &token, CAMPAIGN, USER),
    ];
    for (i, check) in checks.into_iter().enumerate() {
        assert_eq!(check, Err(QuizError::BadSignature), "check {i}");
    }
}

#[test]
fn user_and_campaign_cannot_shift_into_each_other() {
    let token = issue(&key(), "ab", "c", 1, 2, 3);
    assert!(verify(&key(), &token, "ab", "c").is_ok());
    assert_eq!(
        verify(&key(), &token, "a", "bc"),
        Err(QuizError::BadSignature)
    );
    assert_eq!(
        verify(&key(), &token, "abc", ""),
        Err(QuizError::BadSignature)
    );
}

#[test]
fn truncated_tokens_are_malformed() {
    let token = token();
    for cut in 0..token.len() {
        assert_eq!(
            verify(&key(), &token[..cut], USER, CAMPAIGN),
            Err(QuizError::Malformed),
            "cut at {cut}"
        );
    }
}

#[test]
fn garbage_and_non_canonical_tokens_are_malformed() {
    let token = token();
    let mac = token.split('.').nth(4).unwrap().to_string();
    let bad = vec![
        String::new(),
        ".".to_string(),
        "....".to_string(),
        "v1....".to_string(),
        "garbage".to_string(),
        "v1.42.1700000000123.0123456789abcdef".to_string(),
        format!("{token}."),
        format!("{token}.00"),
        format!(".{token}"),
        format!(" {token}"),
        format!("{token} "),
        format!("{token}\n"),
        with_part(&token, 0, "v2"),
        with_part(&token, 0, "V1"),
        with_part(&token, 0, ""),
        with_part(&token, 1, ""),
        with_part(&token, 1, "042"),
        with_part(&token, 1, "+42"),
        with_part(&token, 1, "-1"),
        with_part(&token, 1, " 42"),
        with_part(&token, 1, "4x"),
        with_part(&token, 1, "٤٢"),         // Arabic-Indic digits
        with_part(&token, 1, "4294967296"), // u32::MAX + 1
        with_part(&token, 2, "01700000000123"),
        with_part(&token, 2, "18446744073709551616"), // u64::MAX + 1
        with_part(&token, 2, "1.5"),
        with_part(&token, 3, "0123456789ABCDEF"),
        with_part(&token, 3, "0123456789abcde"),
        with_part(&token, 3, "00123456789abcdef"),
        with_part(&token, 3, "0123456789abcdeg"),
        with_part(&token, 4, &mac.to_uppercase()),
        with_part(&token, 4, &mac[..62]),
        with_part(&token, 4, &format!("{mac}00")),
        with_part(&token, 4, &format!("{}zz", &mac[..62])),
        "v1.1.1.é123456789abcdef.".to_string() + &mac,
    ];
    for token in &bad {
        assert_eq!(
            verify(&key(), token, USER, CAMPAIGN),
            Err(QuizError::Malformed),
            "{token:?}"
        );
    }
}

#[test]
fn overlong_tokens_are_malformed() {
    let token = token();
    let overlong = format!("{token}{}", "0".repeat(MAX_TOKEN_LEN + 1 - token.len()));
    assert_eq!(overlong.len(), MAX_TOKEN_LEN + 1);
    assert_eq!(
        verify(&key(), &overlong, USER, CAMPAIGN),
        Err(QuizError::Malformed)
    );
    let huge = "v1.".to_string() + &"9".repeat(1 << 20);
    assert_eq!(
        verify(&key(), &huge, USER, CAMPAIGN),
        Err(QuizError::Malformed)
    );
}

// -------------------------------------------------------------- timing ----

const TIMING: Timing = Timing {
    min_ms: 1_500,
    ttl_ms: 120_000,
};

fn claim_at(issued_ms: u64) -> QuizClaim {
    QuizClaim {
        question: 0,
        issued_ms,
        id: "id".to_string(),
    }
}

#[test]
fn timing_edges() {
    let claim = claim_at(10_000);
    assert_eq!(
        claim.check_time(10_000, TIMING),
        Err(QuizError::TooFast { wait_ms: 1_500 })
    );
    assert_eq!(
        claim.check_time(11_499, TIMING),
        Err(QuizError::TooFast { wait_ms: 1 })
    );
    assert_eq!(claim.check_time(11_500, TIMING), Ok(()));
    assert_eq!(claim.check_time(11_501, TIMING), Ok(()));
    assert_eq!(claim.check_time(129_999, TIMING), Ok(()));
    assert_eq!(claim.check_time(130_000, TIMING), Ok(()));
    assert_eq!(claim.check_time(130_001, TIMING), Err(QuizError::Expired));
    assert_eq!(claim.check_time(u64::MAX, TIMING), Err(QuizError::Expired));
}

#[test]
fn tokens_from_the_future_are_too_fast() {
    let claim = claim_at(10_000);
    assert_eq!(
        claim.check_time(9_000, TIMING),
        Err(QuizError::TooFast { wait_ms: 2_500 })
    );
    assert_eq!(
        claim.check_time(0, TIMING),
        Err(QuizError::TooFast { wait_ms: 11_500 })
    );
    let no_minimum = Timing {
        min_ms: 0,
        ttl_ms: 60_000,
    };
    assert_eq!(
        claim.check_time(9_999, no_minimum),
        Err(QuizError::TooFast { wait_ms: 1 })
    );
    assert_eq!(claim.check_time(10_000, no_minimum), Ok(()));
}

#[test]
fn timing_saturates_instead_of_overflowing() {
    let late = claim_at(u64::MAX - 10);
    assert_eq!(
        late.check_time(u64::MAX - 10, TIMING),
        Err(QuizError::TooFast { wait_ms: 10 })
    );
    assert_eq!(late.check_time(u64::MAX, TIMING), Ok(()));
    let huge = Timing {
        min_ms: u64::MAX,
        ttl_ms: u64::MAX,
    };
    assert_eq!(
        claim_at(5).check_time(0, huge),
        Err(QuizError::TooFast { wait_ms: u64::MAX })
    );
    assert_eq!(claim_at(5).check_time(u64::MAX, huge), Ok(()));
    let zero = Timing {
        min_ms: 0,
        ttl_ms: 0,
    };
    assert_eq!(claim_at(0).check_time(0, zero), Ok(()));
    assert_eq!(claim_at(0).check_time(1, zero), Err(QuizError::Expired));
}

#[test]
fn a_minimum_above_the_ttl_never_accepts() {
    let odd = Timing {
        min_ms: 10,
        ttl_ms: 5,
    };
    let claim = claim_at(100);
    for now in 95..120 {
        assert!(claim.check_time(now, odd).is_err(), "accepted at {now}");
    }
}

#[test]
fn errors_read_well() {
    assert_eq!(
        QuizError::TooFast { wait_ms: 250 }.to_string(),
        "answered too fast: wait 250 ms more before sending the answer"
    );
    assert_eq!(
        QuizError::Malformed.to_string(),
        "the quiz token is malformed"
    );
}

// ----------------------------------------------------------- proptest ----

#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Replace(i, b)),
        // Mostly characters that can occur in a token, to reach the parser's
        // deeper checks rather than only its UTF-8 and charset ones.
        2 => (any::<usize>(), prop::sample::select(b"0123456789abcdefABCDEF.v+- ".to_vec()))
            .prop_map(|(i, b)| Mutation::Replace(i, b)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => any::<usize>().prop_map(Mutation::Delete),
        1 => any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(token: &str, mutation: &Mutation) -> Vec<u8> {
    let mut bytes = token.as_bytes().to_vec();
    let len = bytes.len();
    match *mutation {
        Mutation::Replace(i, b) => bytes[i % len] = b,
        Mutation::Insert(i, b) => bytes.insert(i % (len + 1), b),
        Mutation::Delete(i) => {
            bytes.remove(i % len);
        }
        Mutation::Truncate(i) => bytes.truncate(i % len),
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// No one-byte change of a token verifies, for this user or another one,
    /// except the identity change, which yields the very same claim.
    #[test]
    fn mutated_tokens_never_verify_as_another_claim(
        user in "[a-z0-9]{0,12}",
        campaign in "[a-z0-9-]{1,12}",
        question in any::<u32>(),
        issued_ms in any::<u64>(),
        nonce in any::<u64>(),
        mutation in mutation(),
    ) {
        let key = key();
        let token = issue(&key, &user, &campaign, question, issued_ms, nonce);
        let original = verify(&key, &token, &user, &campaign).unwrap();
        prop_assert_eq!(original.question, question);
        prop_assert_eq!(original.issued_ms, issued_ms);

        let mutated = apply(&token, &mutation);
        let Ok(mutated) = String::from_utf8(mutated) else {
            return Ok(()); // not a &str: cannot even reach `verify`
        };
        match verify(&key, &mutated, &user, &campaign) {
            Ok(claim) => {
                prop_assert_eq!(&mutated, &token, "a changed token verified");
                prop_assert_eq!(claim, original);
            }
            Err(error) => prop_assert!(
                matches!(error, QuizError::Malformed | QuizError::BadSignature),
                "unexpected error {:?}", error
            ),
        }
        let other_user = format!("{user}x");
        prop_assert_eq!(
            verify(&key, &mutated, &other_user, &campaign).ok(),
            None
        );
    }
}

#[test]
fn image_in_draws_a_missing_image_once_and_then_keeps_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("quiz");
    let b = bank(5);
    let first = b.image_in(&dir, 3).unwrap();
    assert!(first.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert_eq!(
        std::fs::read(dir.join(b.question(3).image_file)).unwrap(),
        first
    );
    // Drawn again, the noise would differ: the file on disk is kept.
    assert_eq!(b.image_in(&dir, 3).unwrap(), first);
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(names.len(), 1, "no temp file left behind");
}
