"""Property test of the target reader: generated lists of good and bad lines, cut into reads at
random places. The reader never raises, every bad line gets exactly one warning with its line
number, and the good lines give exactly their jobs, in order -- no line affects another.

Hypothesis draws one seed per line (and the places where the input is cut); the line is made
from its seed with :class:`random.Random`. Drawing every field through Hypothesis was a hundred
times slower, and shrinking still works line by line (a failing case shrinks to few lines, and
seeds to small numbers).
"""
import ipaddress
import logging
import random
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pathspider.engine.targets import MAX_LINE, TargetStats, read_targets

EXAMPLES = 400
MIN_LINES = 10_000
BOM = b"\xef\xbb\xbf"
UNICODE_NAMES = {"Bücher.example": "xn--bcher-kva.example",
                 "пример.испытание": "xn--e1afmkfd.xn--80akhbyknj4f",
                 "例え.テスト": "xn--r8jz45g.xn--zckzah",
                 "MÜNCHEN.de.": "xn--mnchen-3ya.de"}
BAD_PORTS = ["8_0", "+80", "\u0668\u0660", "0", "65536", "123456", "80a", "", "8 0", "0x50",
             "\uff18\uff10"]
BAD_HOSTS = ["a b", "a:80", "a/b", "u@a", "-a.example", "a..b", "a" * 64, "a\x00b", "a\tb",
             ".".join(["a" * 60] * 5), "ü b", "xn--a.example", "[::1]"]
BAD_RANKS = ["1\x1b[2J", "\x00", "1\x7f"]
BAD_ROWS = [b"198.18.64.1", b"example.org,80", b"198.18.64.256,80", b"#\xff", b",80,h,1",
            b"fe80::1%eth0,80"]
IGNORED = [b"", b"   ", b" , ,", b"# comment", b"\t# comment, \"quoted", b"#"]
LABEL_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"


def label(rng):
    """A random host name label (1-12 characters, hyphens only inside)."""
    inner = "".join(rng.choice(LABEL_CHARS + "--") for _ in range(rng.randint(0, 10)))
    ends = "".join(rng.choice(LABEL_CHARS) for _ in range(2))
    return (ends[0] + inner + ends[1]) if rng.random() < 0.8 else ends[0]


def address(rng):
    """(text in the line, canonical text expected, is IPv4-mapped)."""
    kind = rng.choice(["v4", "v4", "v6", "v6-upper", "v6-bracket", "mapped", "small-v6"])
    if kind in ("v4", "mapped"):
        ip = str(ipaddress.IPv4Address(rng.getrandbits(32)))
        return ("::ffff:" + ip if kind == "mapped" else ip), ip, kind == "mapped"
    value = rng.getrandbits(128) if kind != "small-v6" else rng.getrandbits(rng.randint(1, 40))
    v6 = ipaddress.IPv6Address(value)
    if v6.ipv4_mapped is not None:
        return str(v6.ipv4_mapped), str(v6.ipv4_mapped), False
    text = {"v6-upper": v6.exploded.upper(), "v6-bracket": f"[{v6}]"}.get(kind, str(v6))
    return text, str(v6), False


def good_line(rng):
    """(line bytes, expected job, is IPv4-mapped)."""
    text, ip, mapped = address(rng)
    port = rng.choice([80, 443, 1, 65535, rng.randint(1, 65535)])
    host, expected_host = rng.choice([
        ("", ""), (".".join(label(rng) for _ in range(rng.randint(1, 4))), None),
        rng.choice(sorted(UNICODE_NAMES.items()))])
    expected_host = host.lower() if expected_host is None else expected_host
    rank = rng.choice(["", str(rng.randint(1, 10**7))])
    columns = rng.choice([2, 3, 4, 4, 4])
    fields = [text, rng.choice([str(port), f" {port} ", f"{port}\t"]), host, rank][:columns]
    job = [ip, port, expected_host if columns > 2 else "", rank if columns > 3 else ""]
    if rng.random() < 0.3:
        fields = [f'"{f}"' for f in fields]
    return (",".join(fields) + rng.choice(["\n", "\r\n"])).encode(), job, mapped


def with_field(rng, index, value):
    """A good line (without quotes) with field ``index`` replaced."""
    fields = (good_line_text(rng).split(",") + ["", ""])[:4]
    fields[index] = value
    return ",".join(fields).encode()


def good_line_text(rng):
    line = good_line(rng)[0].decode().rstrip("\r\n")
    return line.replace('"', "")


def junk_text(rng):
    """Random text, starting with "x" so that it is never a valid row or a comment."""
    pool = [chr(rng.randint(32, 126)), chr(rng.randint(0, 31)), chr(rng.randint(0x80, 0xd7ff)),
            chr(rng.randint(0xe000, 0x10ffff)), ",", '"', "\r"]
    return "x" + "".join(rng.choice(pool).replace("\n", "") for _ in range(rng.randint(0, 40)))


BAD_MAKERS = [
    lambda rng: b"\xff" + rng.randbytes(rng.randint(0, 200)).replace(b"\n", b""),
    lambda rng: junk_text(rng).encode(),
    lambda rng: good_line_text(rng).replace(",", ',"', 1).encode(),    # a stray quote
    lambda rng: (good_line_text(rng) + "\rX-Injected: 1").encode(),      # CR inside the line
    lambda rng: ("\ufeff" + good_line_text(rng)).encode(),               # a BOM not at the start
    lambda rng: with_field(rng, 1, rng.choice(BAD_PORTS)),
    lambda rng: with_field(rng, 2, rng.choice(BAD_HOSTS)),
    lambda rng: with_field(rng, 3, rng.choice(BAD_RANKS)),
    lambda rng: rng.choice(BAD_ROWS),
    lambda rng: b"198.18.64.1,80," + b"h" * rng.randint(MAX_LINE - 20, 300_000) + b",1",
]


def line_spec(seed):
    """``(kind, line bytes, job or None, mapped)`` for one line, made from ``seed``."""
    rng = random.Random(seed)
    pick = rng.random()
    if pick < 0.5:
        return ("good", *good_line(rng))
    if pick < 0.9:
        maker = BAD_MAKERS[-1] if rng.random() < 0.02 else rng.choice(BAD_MAKERS[:-1])
        return "bad", maker(rng) + b"\n", None, False
    return "ignored", rng.choice(IGNORED) + b"\n", None, False


@st.composite
def target_list(draw):
    """Line specs and the whole input (BOM or not, last newline or not) cut in pieces."""
    specs = [line_spec(seed) for seed in draw(st.lists(st.integers(0, 2**32), min_size=30,
                                                        max_size=80))]
    data = b"".join(spec[1] for spec in specs)
    if specs[0][1].startswith(BOM) or draw(st.booleans()):
        data = BOM + data  # a BOM at the start is dropped (so a second one makes a bad row)
    if specs[-1][1] != b"\n" and draw(st.booleans()):
        data = data[:-1]  # no newline after the last line (unless that line is empty)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=20)))
    pieces = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
    return specs, pieces


def check(specs, pieces, caplog):
    caplog.clear()
    stats = TargetStats()
    with caplog.at_level(logging.WARNING, logger="pathspider.engine.targets"):
        jobs = list(read_targets(pieces, stats, source="fuzz"))
    skipped, mapped = [], []
    for record in caplog.records:
        found = re.fullmatch(r"fuzz line (\d+)(:| skipped:) .*", record.getMessage(), re.S)
        assert found, record.getMessage()
        (skipped if found.group(2) != ":" else mapped).append(int(found.group(1)))
    numbered = list(enumerate(specs, start=1))
    assert skipped == [n for n, spec in numbered if spec[0] == "bad"]
    assert mapped == [n for n, spec in numbered if spec[3]]
    assert jobs == [spec[2] for spec in specs if spec[0] == "good"]
    assert (stats.lines, stats.jobs, stats.bad) == (len(specs), len(jobs), len(skipped))


def test_reader_keeps_lines_apart(caplog):
    total = [0]

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(target_list())
    def run(case):
        specs, pieces = case
        total[0] += len(specs)
        check(specs, pieces, caplog)

    run()
    print(f"{total[0]} lines in {EXAMPLES} examples")
    assert total[0] >= MIN_LINES, total[0]


def test_generated_lines_cover_every_kind():
    """The generator itself: good, bad (of every maker) and ignored lines all occur."""
    kinds = [line_spec(seed)[0] for seed in range(2000)]
    assert 0.4 < kinds.count("good") / 2000 < 0.6 and kinds.count("ignored") > 100
    assert any(len(line_spec(seed)[1]) > MAX_LINE for seed in range(2000))
    assert any(line_spec(seed)[3] for seed in range(2000))
