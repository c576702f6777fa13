"""gateway.status: every listed Stat lands in the category the reference (cmpp2.md §17) gives it,
unlisted codes fall back by prefix, provider tables extend the default, bad tables are refused
with the file and key named, and a long message's status follows from its segments."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from gateway.status import (
    STANDARD_STATES,
    Classification,
    DeliveryStatus,
    ReceiptTables,
    derive_outcome,
    derive_status,
    load_tables,
)

PROVIDERS = Path(__file__).resolve().parent.parent / "fixtures" / "providers"
DEFAULT_FILE = PROVIDERS / "default.toml"

ACCEPTED, SUBMITTED = DeliveryStatus.ACCEPTED, DeliveryStatus.SUBMITTED
DELIVERED, EXPIRED = DeliveryStatus.DELIVERED, DeliveryStatus.EXPIRED
UNDELIVERABLE, REJECTED = DeliveryStatus.UNDELIVERABLE, DeliveryStatus.REJECTED
FAILED, UNKNOWN = DeliveryStatus.FAILED, DeliveryStatus.UNKNOWN
PENDING = None

# §17.1 "Final category" column and the practical classification rule: (status, temporary).
STATES = {
    "DELIVRD": (DELIVERED, False), "EXPIRED": (EXPIRED, True), "DELETED": (FAILED, False),
    "UNDELIV": (UNDELIVERABLE, False), "ACCEPTD": (PENDING, False),
    "UNKNOWN": (UNKNOWN, False), "REJECTD": (REJECTED, False),
}
PREFIX_CATEGORY = {
    "MA:": (FAILED, True), "CA:": (FAILED, True), "DA:": (FAILED, True), "IA:": (FAILED, True),
    "MB:": (REJECTED, False), "CB:": (REJECTED, False), "DB:": (REJECTED, False),
    "IB:": (REJECTED, False), "ID:": (REJECTED, False), "MN:": (REJECTED, False),
    "MC:": (UNKNOWN, False), "IC:": (UNKNOWN, False), "MM:": (UNKNOWN, False),
    "MH:": (UNKNOWN, False), "SA:": (UNKNOWN, False), "SB:": (UNKNOWN, False),
    "MI:": (EXPIRED, True), "MJ:": (FAILED, False), "MK:": (UNDELIVERABLE, False),
    "ML:": (PENDING, False),
    "HD:": (REJECTED, False), "CJ:": (REJECTED, False), "MX:": (REJECTED, False),
    "TE:": (REJECTED, False), "TD:": (REJECTED, False), "GB:": (REJECTED, False),
    "DI:": (REJECTED, False), "LT:": (REJECTED, False), "SGIP:": (REJECTED, False),
    "CMPP20ERR:": (REJECTED, False), "SMGPERR:": (REJECTED, False), "SMGP": (REJECTED, False),
    "ERR:": (REJECTED, False),
}
# Practical rule, step 4: the MK codes whose cause is temporary.
TEMPORARY_MK = {"MK:0002", "MK:0008", "MK:0010", "MK:0015", "MK:0017", "MK:0024", "MK:0029",
                "MK:0036", "MK:0060", "MK:0061", "MK:0062", "MK:0063", "MK:0064", "MK:0072",
                "MK:0080", "MK:0081", "MK:0101", "MK:0192", "MK:0208", "MK:0254"}
# §17.2 codes whose suggested category differs from their prefix's.
REFINED = {
    "MK:0112": (REJECTED, False), "MK:0113": (REJECTED, False), "MK:0115": (REJECTED, False),
    "MK:0116": (REJECTED, False), "MK:0200": (REJECTED, False), "MK:0150": (EXPIRED, True),
    "MK:0255": (UNKNOWN, False),
    "MN:0001": (UNDELIVERABLE, False), "MN:0011": (UNDELIVERABLE, False),
    "MN:0012": (UNDELIVERABLE, False), "MN:0013": (UNDELIVERABLE, False),
    "MN:0054": (UNDELIVERABLE, False), "MN:0036": (REJECTED, True), "MN:0059": (REJECTED, True),
    "MB:0066": (REJECTED, True), "MB:1042": (REJECTED, True), "MB:1078": (FAILED, False),
    "CB:0016": (FAILED, False), "CB:0018": (FAILED, False), "CB:0022": (FAILED, False),
    "DB:9001": (FAILED, True), "DB:9007": (FAILED, True),
    "IB:0008": (REJECTED, True), "IB:0070": (REJECTED, True), "IB:0064": (REJECTED, True),
    "IB:0194": (REJECTED, True),
    "ID:0111": (FAILED, True), "ID:0151": (FAILED, True), "ID:0154": (FAILED, True),
    **{f"LT:{n}": (UNDELIVERABLE, False) for n in ("0001", "0010", "0012", "0023")},
    **{f"LT:{n}": (UNDELIVERABLE, True) for n in ("0011", "0024", "0054", "0008", "0050", "0051")},
    **{f"LT:{n}": (REJECTED, False) for n in ("0005", "0006", "0015")},
}
# Codes the reference names that the default table must list (besides TEMPORARY_MK, REFINED).
NAMED = {"MA:0051", "MA:0054", "CA:0051", "CA:0052", "CA:0053", "CA:0054", "CA:0111", "DA:0054",
         "MK:0000", "MK:0001", "MK:0003", "MK:0004", "MK:0005", "MK:0009", "MK:0011", "MK:0012",
         "MK:0013", "MK:0019", "MK:0020", "MK:0021", "MK:0022", "MK:0023", "MK:0044", "MK:0082",
         "MK:0209", "MK:0210", "MK:0253", "MI:0010", "MI:0013", "MI:0017", "MI:0024", "MI:0029",
         "MN:0000", "MN:0099", "MN:0174", "MN:0999", "MC:0001", "MC:0055", "MC:0151",
         *(f"MB:{n:04d}" for n in (16, 17, 18, 19, 32, 33, 34, *range(64, 70), *range(96, 109),
                                   1077, 1079, 1083)),
         "CB:0001", "CB:0005", "CB:0007", "CB:0047", "CB:0053",
         *(f"DB:{n:04d}" for n in (*range(100, 109), 112, 113, 114, 115, 116, 140, 141, 142,
                                   143)),
         "IA:0054", "IB:0009", "IC:0001", "IC:0015", "IC:0055", "IC:0154",
         *(f"ID:{n:04d}" for n in (7, 9, 12, 13, 20, 21, 63, 100, 101)),
         "HD:0001", "HD:19", "HD:29", "HD:31", "HD:34", "CJ:0007", "CJ:0008"}


def expected(stat: str) -> tuple[DeliveryStatus | None, bool]:
    """The reference's category for a Stat, worked out here, not read from the table."""
    if stat in STATES:
        return STATES[stat]
    if stat in REFINED:
        return REFINED[stat]
    prefix = max((p for p in PREFIX_CATEGORY if stat.startswith(p)), key=len)
    status, temporary = PREFIX_CATEGORY[prefix]
    return status, temporary or stat in TEMPORARY_MK


def default_file() -> dict:
    return tomllib.loads(DEFAULT_FILE.read_text(encoding="utf-8"))


LISTED = sorted(default_file()["codes"]) + sorted(STATES)


@pytest.fixture(scope="module")
def tables() -> ReceiptTables:
    return load_tables(PROVIDERS)


@pytest.fixture(scope="module")
def default(tables):
    return tables.for_provider("default")


@pytest.mark.parametrize("stat", LISTED)
def test_every_listed_stat_lands_in_the_references_category(default, stat):
    got = default.classify(stat)
    assert (got.status, got.temporary) == expected(stat)
    assert got.known and got.meaning and got.stat == stat and got.provider == "default"
    assert default.is_listed(stat)


def test_the_default_table_lists_every_code_the_reference_names(default):
    assert TEMPORARY_MK | set(REFINED) | NAMED | STANDARD_STATES <= default.codes
    assert default.codes == set(LISTED)


@pytest.mark.parametrize("prefix", sorted(PREFIX_CATEGORY))
def test_every_prefix_of_the_reference_has_its_rule(default, prefix):
    got = default.classify(prefix + "9998")
    assert (got.status, got.temporary) == PREFIX_CATEGORY[prefix]
    assert not got.known and got.meaning
    assert not default.is_listed(prefix + "9998")


def test_prefixes_come_before_codes_in_the_default_file():
    text = DEFAULT_FILE.read_text(encoding="utf-8")
    assert 0 < text.index("\n[prefixes]\n") < text.index("\n[codes]\n")
    assert set(default_file()["prefixes"]) == set(PREFIX_CATEGORY) | set(STATES)


@pytest.mark.parametrize("stat, status, known", [
    ("MK:9999", UNDELIVERABLE, False),
    ("ZZ:0001", UNKNOWN, False),
    ("", UNKNOWN, False),
    ("ACCEPTD", PENDING, True),
    ("ML:0001", PENDING, False),
])
def test_unlisted_codes_fall_back_by_prefix_then_to_unknown(default, stat, status, known):
    got = default.classify(stat)
    assert (got.status, got.known, got.temporary) == (status, known, False)
    assert got.final is (status is not None)


def test_zz_code_has_no_meaning_and_is_not_listed(default):
    assert default.classify("ZZ:0001").meaning == ""
    assert not default.is_listed("ZZ:0001") and not default.is_listed("MK:9999")


@pytest.mark.parametrize("raw, same_as", [
    ("MK:0012\0", "MK:0012"), ("DELIVRD   ", "DELIVRD"), ("delivrd", "DELIVRD"),
    ("mk:0010", "MK:0010"), ("HD:19\0\0", "HD:19"), ("mk:9999", "MK:9999"),
])
def test_padding_is_ignored_and_lower_case_is_tried_upper_cased(default, raw, same_as):
    got, want = default.classify(raw), default.classify(same_as)
    assert (got.status, got.temporary, got.known, got.meaning) == \
           (want.status, want.temporary, want.known, want.meaning)
    assert got.stat == raw
    assert default.is_listed(raw) is default.is_listed(same_as)


def test_standard_states_match_exactly_not_as_prefixes(default):
    assert default.classify("DELIVRDX").status is UNKNOWN
    assert not default.is_listed("UNDELIVRD")


def test_the_longest_matching_prefix_wins(default):
    assert default.classify("SMGPERR:7").meaning == "SMGP error relayed by an aggregator"
    assert default.classify("SMGP601").status is REJECTED


def test_override_replaces_and_adds_codes(tables, default):
    aggregator = tables.for_provider("example-aggregator")
    replaced = aggregator.classify("HD:29")
    assert (replaced.status, replaced.temporary) == (REJECTED, True)
    assert default.classify("HD:29").temporary is False
    added = aggregator.classify("SGIP:25")
    assert (added.status, added.temporary, added.known) == (UNDELIVERABLE, True, True)
    assert not default.is_listed("SGIP:25") and aggregator.is_listed("SGIP:25")
    assert aggregator.classify("SGIP:99").status is UNDELIVERABLE
    assert default.classify("SGIP:99").status is REJECTED
    assert aggregator.codes > default.codes


# ----------------------------------------------------------------------------- JSMS codes

# JSMS's SMS_REPORT status codes (jsms-callbacks.md) for the Stats whose meaning in the
# reference (§17) is one of them without doubt; worked out here from the meanings, not read
# from the table. Every other Stat gets its final status's code: 4001 delivered, 4003 expired
# (the handset was off or away for the validity period), 4100 the rest.
BLACKLIST, HANDSET, EMPTY_NUMBER, NO_BALANCE, TOO_OFTEN, SENSITIVE = \
    4002, 4003, 4004, 4005, 4006, 4010
JSMS_EXPECTED = {
    **dict.fromkeys(["MB:1077", "DB:0141", "HD:0001", "HD:19"], BLACKLIST),
    **dict.fromkeys([                   # off, suspended, memory full, out of area, SIM, handset
        "MK:0002", "MK:0003", "MK:0004", "MK:0005", "MK:0008", "MK:0009", "MK:0010", "MK:0011",
        "MK:0015", "MK:0017", "MK:0019", "MK:0020", "MK:0022", "MK:0024", "MK:0029", "MK:0044",
        "MK:0060", "MK:0080", "MK:0081", "MK:0082", "MK:0113", "MK:0208", "MK:0209", "MK:0210",
        "MN:0036", "MN:0059", "MB:1042", "DB:0102", "IB:0064", "IB:0194", "IC:0001", "MC:0055",
        "LT:0008", "LT:0011", "LT:0024", "LT:0054", "LT:0050", "LT:0051"], HANDSET),
    **dict.fromkeys(["MK:0001", "MK:0012", "DB:0100", "DB:0101", "LT:0001", "LT:0010", "LT:0012",
                     "LT:0023", "CB:0001", "ID:0021"], EMPTY_NUMBER),
    **dict.fromkeys(["MK:0112", "CB:0007", "DB:0103"], NO_BALANCE),
    **dict.fromkeys(["HD:29", "HD:31", "HD:34", "DB:0142", "DB:0143", "IB:0008", "DB:9007"],
                    TOO_OFTEN),
    **dict.fromkeys(["MN:0000", "MN:0174", "MN:0999", "CJ:0007", "CJ:0008", "MK:0116"],
                    SENSITIVE),
}


def jsms_expected(stat: str) -> int | None:
    status, _ = expected(stat)
    if status is None:
        return None
    if stat in JSMS_EXPECTED:
        return JSMS_EXPECTED[stat]
    return {DELIVERED: 4001, EXPIRED: HANDSET}.get(status, 4100)


@pytest.mark.parametrize("stat", LISTED)
def test_every_listed_stat_has_the_jsms_code_its_meaning_gives(default, stat):
    status, _ = expected(stat)
    if status is None:
        assert default.classify(stat).jsms is None                # pending: never reported
    else:
        assert default.jsms_status(status, stat) == jsms_expected(stat)


@pytest.mark.parametrize("stat, code", [
    ("MK:9999", 4100), ("MI:0099", HANDSET), ("CJ:0099", SENSITIVE), ("HD:77", 4100),
    ("ZZ:0001", 4100), ("DELIVRD", 4001), ("EXPIRED", HANDSET), ("UNDELIV", 4100),
])
def test_an_unlisted_stat_takes_its_prefix_rules_code_then_its_statuss(default, stat, code):
    assert default.jsms_status(default.classify(stat).status, stat) == code


def test_a_status_without_a_deciding_report_takes_the_statuss_code(default):
    assert [default.jsms_status(s) for s in (DELIVERED, EXPIRED, UNDELIVERABLE, REJECTED,
                                             FAILED, UNKNOWN)] == \
        [4001, HANDSET, 4100, 4100, 4100, 4100]
    # An entry's code stands only for its own status: a message that ended "failed" after a
    # report the table now reads as an empty number is not reported as one.
    assert default.jsms_status(FAILED, "MK:0012") == 4100
    assert default.jsms_status(UNDELIVERABLE, "Result 9") == 4100


def test_a_provider_overrides_jsms_codes_per_entry_and_per_status(tables, default, tmp_path):
    aggregator = tables.for_provider("example-aggregator")
    assert aggregator.jsms_status(REJECTED, "HD:29") == TOO_OFTEN         # restated entry
    assert aggregator.jsms_status(UNDELIVERABLE, "SGIP:25") == HANDSET    # added entry
    assert default.jsms_status(REJECTED, "SGIP:25") == 4100
    write(tmp_path, "default", GOOD_DEFAULT + '"HD:" = { status = "rejected", jsms = 4002 }\n'
                                              '[jsms]\nexpired = 4100\n')
    write(tmp_path, "mine", 'extends = "default"\n[jsms]\nrejected = 4006\n[codes]\n'
                            '"MK:0012" = { status = "undeliverable", jsms = 4004 }\n')
    base, mine = (load_tables(tmp_path).for_provider(name) for name in ("default", "mine"))
    assert [mine.jsms_status(EXPIRED), mine.jsms_status(REJECTED), mine.jsms_status(FAILED),
            mine.jsms_status(UNDELIVERABLE, "MK:0012"), mine.jsms_status(REJECTED, "HD:1")] \
        == [4100, TOO_OFTEN, 4100, EMPTY_NUMBER, BLACKLIST]
    assert (base.jsms_status(REJECTED), base.jsms_status(UNDELIVERABLE, "MK:0012")) == \
        (4100, 4100)


def test_a_table_without_jsms_codes_reports_delivered_4001_and_the_rest_4100(tmp_path):
    write(tmp_path, "default", GOOD_DEFAULT)
    codes = load_tables(tmp_path).for_provider("default")
    assert [codes.jsms_status(s) for s in (DELIVERED, EXPIRED, UNDELIVERABLE)] == \
        [4001, 4100, 4100]


def test_override_inherits_what_it_does_not_replace(tables):
    got = tables.for_provider("example-aggregator").classify("MK:0012")
    assert (got.status, got.known, got.provider) == (UNDELIVERABLE, True, "example-aggregator")


def test_unknown_provider_gets_the_default_table_under_its_own_name(tables, default):
    codes = tables.for_provider("cmcc-gd")
    assert codes.codes == default.codes
    got = codes.classify("MK:0010")
    assert (got.status, got.temporary, got.provider) == (UNDELIVERABLE, True, "cmcc-gd")
    assert tables.for_provider("cmcc-gd") is codes
    assert tables.providers == {"default", "example-aggregator"}


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


GOOD_DEFAULT = '[prefixes]\n"MK:" = { status = "undeliverable" }\n'
BAD_TABLES = [
    ("unknown status word", '[codes]\n"MK:0012" = { status = "gone" }\n',
     '[codes] "MK:0012": status: unknown status word \'gone\''),
    ("status missing", '[codes]\n"MK:0012" = { temporary = true }\n',
     '[codes] "MK:0012": status: missing'),
    ("submitted is not a receipt status", '[prefixes]\n"MK:" = { status = "submitted" }\n',
     '[prefixes] "MK:": status: unknown status word \'submitted\''),
    ("code not a table", '[codes]\n"MK:0012" = "undeliverable"\n',
     '[codes] "MK:0012": expected an inline table'),
    ("code key with a space", '[codes]\n"MK 0012" = { status = "undeliverable" }\n',
     '[codes] "MK 0012": a code or prefix is printable ASCII'),
    ("dotted code key", '[codes]\nMK.0012 = { status = "undeliverable" }\n',
     '[codes] "MK": 0012: unknown key'),
    ("temporary not a boolean", '[codes]\n"MK:0012" = { status = "expired", temporary = 1 }\n',
     '[codes] "MK:0012": temporary: expected true or false'),
    ("meaning not a string", '[codes]\n"MK:0012" = { status = "expired", meaning = 3 }\n',
     '[codes] "MK:0012": meaning: expected a string'),
    ("unknown entry key", '[codes]\n"MK:0012" = { status = "expired", why = "x" }\n',
     '[codes] "MK:0012": why: unknown key'),
    ("unknown top-level key", 'extend = "default"\n', "extend: unknown key"),
    ("extends not a string", "extends = 5\n", "extends: expected the name of another table"),
    ("extends missing target", 'extends = "nowhere"\n', "extends: no table named 'nowhere'"),
    ("codes not a table", 'codes = "MK:0012"\n', "codes: expected a table [codes]"),
    ("not TOML", "[codes\n", "not a valid TOML file"),
    ("jsms not a code", '[codes]\n"MK:0012" = { status = "undeliverable", jsms = 4011 }\n',
     '[codes] "MK:0012": jsms: 4011 is not a JSMS status code for SMS; use one of 4001'),
    ("jsms voice code", '[codes]\n"MK:0012" = { status = "undeliverable", jsms = 4008 }\n',
     "jsms: 4008 is not a JSMS status code"),
    ("jsms a string", '[codes]\n"MK:0012" = { status = "undeliverable", jsms = "4004" }\n',
     "jsms: '4004' is not a JSMS status code"),
    ("jsms 4001 not delivered", '[codes]\n"MK:0012" = { status = "undeliverable", jsms = 4001 }\n',
     '[codes] "MK:0012": jsms: 4001 for status undeliverable; 4001 (delivered) is for'),
    ("delivered not 4001", '[prefixes]\n"DELIVRD" = { status = "delivered", jsms = 4100 }\n',
     "jsms: 4100 for status delivered"),
    ("jsms on pending", '[prefixes]\n"ACCEPTD" = { status = "pending", jsms = 4100 }\n',
     '[prefixes] "ACCEPTD": jsms: a pending entry ends nothing and is never reported'),
    ("jsms status word", "[jsms]\nsubmitted = 4100\n",
     '[jsms] "submitted": not a final status; use delivered, expired'),
    ("jsms table code", "[jsms]\nrejected = 4001\n", "[jsms] rejected: 4001 for status rejected"),
    ("jsms not a table", 'jsms = 4100\n', "jsms: expected a table [jsms]"),
]


@pytest.mark.parametrize("text, message", [case[1:] for case in BAD_TABLES],
                         ids=[case[0] for case in BAD_TABLES])
def test_bad_table_file_is_refused_naming_file_and_key(tmp_path, text, message):
    write(tmp_path, "default", GOOD_DEFAULT)
    path = write(tmp_path, "acme", text)
    with pytest.raises(ValueError) as caught:
        load_tables(tmp_path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_extends_cycle_is_refused(tmp_path):
    write(tmp_path, "default", GOOD_DEFAULT)
    write(tmp_path, "a", 'extends = "b"\n')
    path = write(tmp_path, "b", 'extends = "a"\n')
    with pytest.raises(ValueError, match="extends: .* is a cycle") as caught:
        load_tables(tmp_path)
    assert str(caught.value).split(": ")[0] in {str(path), str(tmp_path / "a.toml")}


def test_directory_without_default_table_is_refused(tmp_path):
    write(tmp_path, "acme", GOOD_DEFAULT)
    with pytest.raises(ValueError, match=r"no default\.toml"):
        load_tables(tmp_path)


def test_chained_extends_resolve_nearest_first(tmp_path):
    write(tmp_path, "default", GOOD_DEFAULT)
    write(tmp_path, "parent", 'extends = "default"\n[codes]\n'
                              '"MK:0001" = { status = "rejected" }\n'
                              '"MK:0002" = { status = "rejected" }\n')
    write(tmp_path, "child", 'extends = "parent"\n[codes]\n"MK:0001" = { status = "failed" }\n')
    child = load_tables(tmp_path).for_provider("child")
    assert [child.classify(s).status for s in ("MK:0001", "MK:0002", "MK:0003")] == \
           [FAILED, REJECTED, UNDELIVERABLE]


def test_final_statuses():
    assert {s for s in DeliveryStatus if not s.final} == {ACCEPTED, SUBMITTED}
    assert DeliveryStatus("undeliverable") is UNDELIVERABLE


@pytest.mark.parametrize("parts, status", [
    ([DELIVERED, DELIVERED, DELIVERED], DELIVERED),
    ([DELIVERED, UNDELIVERABLE, DELIVERED], UNDELIVERABLE),
    ([DELIVERED, EXPIRED, REJECTED], EXPIRED),
    ([REJECTED, EXPIRED], REJECTED),
    ([SUBMITTED, UNDELIVERABLE], UNDELIVERABLE),
    ([None, FAILED], FAILED),
    ([DELIVERED, SUBMITTED], SUBMITTED),
    ([DELIVERED, DELIVERED, None], ACCEPTED),
    ([SUBMITTED, ACCEPTED], ACCEPTED),
    ([SUBMITTED, SUBMITTED], SUBMITTED),
    ([None], ACCEPTED),
    ([DELIVERED], DELIVERED),
    ([UNKNOWN], UNKNOWN),
])
def test_derive_status(parts, status):
    assert derive_status(parts) is status


def test_derive_status_needs_a_segment():
    with pytest.raises(ValueError, match="at least one segment"):
        derive_status([])


def receipt(status: DeliveryStatus | None, stat: str) -> Classification:
    return Classification(status, False, stat, "default", True, "")


def test_derive_outcome_all_delivered_is_the_last_parts_receipt():
    parts = [receipt(DELIVERED, "DELIVRD"), receipt(DELIVERED, "DELIVRD ")]
    assert derive_outcome(parts) is parts[-1]


def test_derive_outcome_first_failure_wins_by_part_order():
    parts = [receipt(DELIVERED, "DELIVRD"), receipt(UNDELIVERABLE, "MK:0012"),
             receipt(EXPIRED, "MI:0010")]
    assert derive_outcome(parts) is parts[1]
    assert derive_outcome([None, parts[2], parts[1]]) is parts[2]


def test_derive_outcome_is_none_while_a_part_is_pending():
    delivered = receipt(DELIVERED, "DELIVRD")
    assert derive_outcome([delivered, None]) is None
    assert derive_outcome([delivered, receipt(PENDING, "ACCEPTD")]) is None


def test_derive_outcome_single_part(default):
    only = default.classify("MK:0010")
    assert derive_outcome([only]) is only
    assert derive_outcome([default.classify("ML:0001")]) is None
    with pytest.raises(ValueError, match="at least one segment"):
        derive_outcome([])


# ----------------------------------------------------------------------------- operators' tables

def test_a_providers_directory_extends_the_built_in_tables_without_copying_them(tmp_path):
    from gateway.status import BUILTIN_TABLES, provider_tables
    assert (BUILTIN_TABLES / "default.toml").read_bytes() == DEFAULT_FILE.read_bytes()
    write(tmp_path, "mycenter", 'extends = "default"\n[codes]\n'
                                '"MK:0012" = { status = "rejected", meaning = "blacklisted" }\n')
    tables = provider_tables(str(tmp_path))
    mine, other = tables.for_provider("mycenter"), tables.for_provider("someone")
    assert (mine.classify("MK:0012").status, mine.classify("MK:0012").meaning) == \
        (REJECTED, "blacklisted")
    assert mine.classify("DELIVRD").status is DELIVERED            # the rest from default
    assert other.classify("MK:0012").status is UNDELIVERABLE
    assert tables.path_for("mycenter") == tmp_path / "mycenter.toml"
    assert tables.path_for("someone") == BUILTIN_TABLES / "default.toml"


def test_a_default_table_in_the_providers_directory_replaces_the_built_in_one(tmp_path):
    from gateway.status import provider_tables
    write(tmp_path, "default", '[prefixes]\n"MK:" = { status = "failed" }\n')
    codes = provider_tables(str(tmp_path)).for_provider("anyone")
    assert codes.classify("MK:0012").status is FAILED
    assert codes.classify("DELIVRD").status is UNKNOWN


def test_a_missing_providers_directory_is_a_table_error(tmp_path):
    from gateway.status import TableError, provider_tables
    with pytest.raises(TableError, match="not a directory of receipt-code tables"):
        provider_tables(str(tmp_path / "absent"))


def test_classify_says_what_each_stat_means(capsys, tmp_path):
    from gateway.cli import main
    assert main(["classify", "MK:0012", "DELIVRD", "ACCEPTD", "XX:1"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "'MK:0012' -> undeliverable, permanent cause, listed, JSMS 4004: number does not exist",
        "'DELIVRD' -> delivered, listed, JSMS 4001: delivered to the handset",
        "'ACCEPTD' -> pending (not final; keep waiting), listed: intermediate state; keep "
        "waiting for the final report",
        "'XX:1' -> unknown, permanent cause, not listed (prefix rule or unknown), JSMS 4100"]
    write(tmp_path, "mycenter", 'extends = "default"\n[codes]\n"XX:1" = { status = "expired", '
                                'temporary = true }\n')
    assert main(["classify", "--providers", str(tmp_path), "--provider", "mycenter",
                 "XX:1"]) == 0
    assert capsys.readouterr().out == "'XX:1' -> expired, temporary cause, listed, JSMS 4003\n"
    write(tmp_path, "broken", '[codes]\n"A" = 1\n')
    assert main(["classify", "--providers", str(tmp_path), "A"]) == 2
    assert "broken.toml" in capsys.readouterr().out
