"""The ``observe`` sub-command: options, errors, golden pcaps through it, and a live capture
in a network namespace ended by Ctrl-C (SIGINT)."""
import argparse
import collections
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pathspider.cli import observe
from pathspider.observer import chains as registry

GOLDEN = Path(__file__).resolve().parents[1] / 'data' / 'golden'
MANIFEST = json.loads((GOLDEN / 'manifest.json').read_text())
REPO = Path(__file__).resolve().parents[2]


def parse(argv, **globals_):
    """Parse like the CLI does: global options, then the ``observe`` sub-command."""
    parser = argparse.ArgumentParser()
    parser.add_argument('-i', '--interface', default=globals_.get('interface'))
    parser.add_argument('--output', default='/dev/stdout')
    sub = parser.add_subparsers()
    observe.register_args(sub)
    return parser.parse_args(list(globals_.get('before', [])) + ['observe'] + argv)


def multiset(lines):
    return collections.Counter(json.dumps(json.loads(line), sort_keys=True) for line in lines)


def expected_lines(fname):
    return (GOLDEN / (fname + '.jsonl')).read_text().splitlines()


def test_list_chains(capsys):
    args = parse(['--list-chains'])
    assert args.func is observe.main
    assert observe.main(args) == 0
    out = capsys.readouterr().out
    for chain in registry.REGISTRY.values():
        assert chain.name + ': ' in out
        for field in chain.fields:
            assert field.name in out


@pytest.mark.parametrize('fname', ['ecn.pcap', 'tfo_iana.pcap', 'pcapng.pcapng',
                                   'real_udp.pcap'])
def test_golden_through_the_command(fname, capsys):
    chains = ','.join(MANIFEST[fname]['chains'])
    assert observe.main(parse(['--chains', chains, '-r', str(GOLDEN / fname)])) == 0
    out = capsys.readouterr().out.splitlines()
    assert multiset(out) == multiset(expected_lines(fname))


def test_source_forms_agree(capsys, tmp_path):
    path = str(GOLDEN / 'tcp_rst.pcap')
    outputs = []
    for argv in ([path], ['--source', path], ['pcap:' + path], ['-r', path]):
        assert observe.main(parse(['--chains', 'basic,tcp'] + argv)) == 0
        outputs.append(multiset(capsys.readouterr().out.splitlines()))
    out_file = tmp_path / 'records.ndjson'
    assert observe.main(parse(['--chains', 'basic,tcp', '--out', str(out_file), path])) == 0
    assert capsys.readouterr().out == ''
    outputs.append(multiset(out_file.read_text().splitlines()))
    assert all(o == outputs[0] for o in outputs)
    assert outputs[0] == multiset(expected_lines('tcp_rst.pcap'))


def test_default_chains_are_basic_and_tcp(capsys):
    assert observe.main(parse([str(GOLDEN / 'tcp_handshake_only.pcap')])) == 0
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(recs) == 2
    assert {'sip', 'dip', 'sp', 'tcp_connected'} <= set(recs[0])
    assert not any(k.startswith('tfo_') or k.startswith('fwd_e') for k in recs[0])


def test_unknown_chain_is_an_error(capsys):
    assert observe.main(parse(['--chains', 'basic,nosuch', str(GOLDEN / 'ecn.pcap')])) == 1
    captured = capsys.readouterr()
    assert captured.out == ''
    assert 'unknown chain: nosuch' in captured.err and 'known chains: basic' in captured.err


@pytest.mark.parametrize('argv, message', [
    (['/nonexistent/trace.pcap'], 'no such file'),
    (['dag:/dev/dag0'], 'unknown URI scheme'),
    (['a.pcap', '-r', 'b.pcap'], 'give one source'),
])
def test_bad_sources_are_errors(argv, message, capsys):
    assert observe.main(parse(argv)) == 1
    assert message in capsys.readouterr().err


def test_no_source_uses_global_interface():
    args = parse([], interface='eth7')
    assert observe.resolve_source(args) == 'int:eth7'
    with pytest.raises(ValueError, match='no source'):
        observe.resolve_source(parse([]))


def test_stats_on_stderr(capsys):
    args = parse(['--stats', '--chains', 'basic', str(GOLDEN / 'malformed.pcap')])
    assert observe.main(args) == 0
    err = capsys.readouterr().err
    stats = json.loads(err.strip().splitlines()[-1])
    assert stats['packets'] == 10 and stats['nonip'] == 2 and stats['flows'] == 1


def test_standalone_module_entry_point():
    res = subprocess.run([sys.executable, '-m', 'pathspider.cli.observe', '--chains',
                          'basic,udp', str(GOLDEN / 'udp_zero_checksum.pcap')],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert multiset(res.stdout.splitlines()) == multiset(
        expected_lines('udp_zero_checksum.pcap'))


def test_cli_entry_point():
    """``pathspider observe`` through the installed console script (the lead's CLI)."""
    exe = Path(sys.executable).with_name('pathspider')
    if not (REPO / 'pathspider' / 'run.py').exists() or not exe.exists():
        pytest.skip('pathspider.run (the CLI) is not there yet')
    res = subprocess.run([str(exe), 'observe', '--chains', 'basic,tcp,mss',
                          str(GOLDEN / 'mss.pcap')], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert multiset(res.stdout.splitlines()) == multiset(expected_lines('mss.pcap'))
    res = subprocess.run([str(exe), 'observe', '--chains', 'nosuch', str(GOLDEN / 'mss.pcap')],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and 'unknown chain' in res.stderr


# ---------------------------------------------------------------------------- live capture

A4, B4 = '198.19.253.1', '198.19.253.2'


@pytest.fixture
def veth_pair():
    """Two namespaces joined by a veth pair (oa in ns A, ob in ns B); removed afterwards."""
    prefix = 'psobs%d' % os.getpid()
    ns_a, ns_b = prefix + 'a', prefix + 'b'

    def ip(*args):
        subprocess.run(['ip', *args], check=True, capture_output=True, timeout=30)
    try:
        ip('netns', 'add', ns_a)
        ip('netns', 'add', ns_b)
        ip('-n', ns_a, 'link', 'add', 'oa', 'type', 'veth', 'peer', 'name', 'ob', 'netns', ns_b)
        for ns, dev, addr in ((ns_a, 'oa', A4), (ns_b, 'ob', B4)):
            ip('-n', ns, 'addr', 'add', addr + '/24', 'dev', dev)
            ip('-n', ns, 'link', 'set', dev, 'up')
            ip('-n', ns, 'link', 'set', 'lo', 'up')
        yield ns_a, ns_b
    finally:
        for ns in (ns_a, ns_b):
            subprocess.run(['ip', 'netns', 'del', ns], capture_output=True, timeout=30)


TRAFFIC = '''
import socket
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("%(a)s", 41000))
u.sendto(b"hello", ("%(b)s", 9))
u.settimeout(2)
try:
    u.recv(10)
except (ConnectionRefusedError, socket.timeout):
    pass
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.bind(("%(a)s", 41001))
t.settimeout(2)
try:
    t.connect(("%(b)s", 9))
except ConnectionRefusedError:
    pass
''' % {'a': A4, 'b': B4}


def start_observer(ns, *argv):
    proc = subprocess.Popen(['ip', 'netns', 'exec', ns, sys.executable, '-m',
                             'pathspider.cli.observe', *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    ready, _, _ = select.select([proc.stderr], [], [], 20)
    line = proc.stderr.readline() if ready else ''
    if 'capturing on' not in line:
        proc.kill()
        proc.wait()
        pytest.fail('observe did not start capturing: %r' % line)
    return proc


def stop_observer(proc, signum):
    """Send ``signum``; return (stdout, stderr, seconds to exit). Kills it if it hangs."""
    t0 = time.monotonic()
    try:
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out, err, time.monotonic() - t0


@pytest.mark.root
def test_live_capture_flushes_on_ctrl_c(veth_pair):
    ns_a, _ = veth_pair
    proc = start_observer(ns_a, '--chains', 'basic,tcp,udp,icmp', '--stats', 'int:oa')
    try:
        subprocess.run(['ip', 'netns', 'exec', ns_a, sys.executable, '-c', TRAFFIC],
                       check=True, timeout=30)
    finally:
        out, err, elapsed = stop_observer(proc, signal.SIGINT)
    assert proc.returncode == 0, err
    assert elapsed < 10
    recs = {(r['proto'], r['sp']): r for r in map(json.loads, out.splitlines())}
    udp = recs[(17, 41000)]
    assert (udp['sip'], udp['dip'], udp['dp']) == (A4, B4, 9)
    assert udp['pkt_fwd'] == 1 and udp['pkt_rev'] == 1 and udp['icmp_unreachable'] is True
    tcp = recs[(6, 41001)]
    assert tcp['fwd_syn_flags'] & 0x02 and tcp['rev_rst'] is True
    assert tcp['tcp_connected'] is False
    stats = json.loads(err.strip().splitlines()[-1])
    assert stats['packets'] >= 4 and stats['chain_errors'] == 0


@pytest.mark.root
def test_live_capture_on_quiet_interface_stops_promptly(veth_pair):
    ns_a, _ = veth_pair
    # bare interface name; the kernel filter keeps out IPv6 neighbour discovery and MLD
    proc = start_observer(ns_a, '--chains', 'basic', '--bpf', 'ip', 'oa')
    out, err, elapsed = stop_observer(proc, signal.SIGTERM)
    assert proc.returncode == 0, err
    assert out == '' and elapsed < 5
