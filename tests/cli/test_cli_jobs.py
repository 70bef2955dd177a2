"""``--input-format`` and ``--format jobs`` through the real command line, with a 1.0 plugin
(no capture, connections to a loopback listener): 1.0 plugins run unchanged on ndjson jobs."""
import json

from test_cli import CLITEST_PLUGIN, listener, plugin_tree, run  # noqa: F401  (fixture)


def test_ndjson_jobs_in_flows_out(tmp_path, listener):  # noqa: F811
    tree = plugin_tree(tmp_path / "tp", "clitest", CLITEST_PLUGIN)
    jobs = [{"dip": "127.0.0.1", "dp": listener, "domain": "a.example", "rank": 1, "x": [1]},
            "not an object",
            {"dip": "127.0.0.1", "dp": listener, "rank": "r2"}]
    stdin = "".join(json.dumps(job) + "\n" for job in jobs)
    proc = run(["-i", "lo", "--allow", "-w", "2", "clitest"], pythonpath=[tree], stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sorted((r["rank"], r["config"], r["ok"]) for r in records) == [
        ("1", 0, True), ("1", 1, True), ("r2", 0, True), ("r2", 1, True)]
    assert "input line 2 skipped: a JSON str, not an object" in proc.stderr
    assert "1 bad rows skipped" in proc.stderr


def test_jobs_format_from_csv_and_from_ndjson(tmp_path, listener):  # noqa: F811
    tree = plugin_tree(tmp_path / "tp", "clitest", CLITEST_PLUGIN)
    csv = f"127.0.0.1,{listener},h.example,7\n"
    proc = run(["-i", "lo", "--allow", "--format", "jobs", "clitest"], pythonpath=[tree], stdin=csv)
    assert proc.returncode == 0, proc.stderr
    [line] = [json.loads(text) for text in proc.stdout.splitlines()]
    assert list(line)[:4] == ["dip", "dp", "domain", "rank"]
    assert (line["dip"], line["dp"], line["domain"], line["rank"]) == (
        "127.0.0.1", listener, "h.example", "7")
    assert [r["config"] for r in line["flow_results"]] == [0, 1]
    assert line["missed_flows"] == 2 and "conditions" not in line   # no interpretation
    assert "1 job lines with 2 records written" in proc.stderr

    job = {"dip": "127.0.0.1", "dp": listener, "rank": 3, "info": {"deep": [None, 1.5]}}
    proc = run(["-i", "lo", "--allow", "--format", "jobs", "--input-format", "ndjson", "clitest"],
               pythonpath=[tree], stdin=json.dumps(job) + "\n")
    assert proc.returncode == 0, proc.stderr
    [line] = [json.loads(text) for text in proc.stdout.splitlines()]
    assert {key: line[key] for key in job} == job
    assert [r["rank"] for r in line["flow_results"]] == ["3", "3"]   # the plugin saw a 1.0 job


def test_forced_csv_reads_a_json_line_as_a_bad_row(tmp_path, listener):  # noqa: F811
    tree = plugin_tree(tmp_path / "tp", "clitest", CLITEST_PLUGIN)
    stdin = json.dumps({"dip": "127.0.0.1", "dp": listener}) + "\n"
    proc = run(["-i", "lo", "--allow", "--input-format", "csv", "clitest"], pythonpath=[tree],
               stdin=stdin)
    assert proc.returncode == 0 and proc.stdout == ""
    assert "input line 1 skipped" in proc.stderr


def test_bad_format_choice_is_refused():
    proc = run(["--format", "xml", "ecn"])
    assert proc.returncode == 2 and "invalid choice: 'xml'" in proc.stderr
