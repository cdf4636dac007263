"""meshlab.exercises: exact grading, feedback instead of tracebacks, the answer gate, the solutions switch,
quizzes (shuffled per learner, widget and text)."""

from __future__ import annotations

import pytest

from meshlab.errors import MeshlabError
from meshlab.exercises import ENV, LEARNER_ENV, Exercises, NotYet, Question, Quiz, answer_positions, key_skew, same

QUESTIONS = [
    Question("Which address does a remote endpoint show on separate networks?",
             "the east-west gateway on 15443", ("the pod IP", "the node IP", "the Service's cluster IP"),
             "split-horizon EDS replaces remote pods by their network's gateway"),
    Question("Who fetches a WasmPlugin module?", "istio-agent", ("istiod", "Envoy itself", "the kubelet"),
             "the agent next to Envoy fetches it"),
]


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setenv(LEARNER_ENV, "ada")


# ---- grading ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer, expected, ok", [
    ("cluster1", "cluster1", True), (" Cluster1\n", "cluster1", True), ("outbound_.5000_.v2", "OUTBOUND_.5000_.V2", True),
    ("", "cluster1", False), ("cluster", "cluster1", False), ("cluster1 ", "cluster2", False),  # no substring, no prefix
    (3, 3, True), (3.0, 3, True), ("3", 3, False), (True, 1, False), (None, 0, False), (0, 0, True),
    ({"cluster1"}, {"cluster1"}, True), (["Cluster1"], {"cluster1"}, True), ("cluster1", {"cluster1"}, False),
    (set(), set(), True), (None, set(), False), ("", set(), False),
    ([503, 200, 200], [503, 200, 200], True), ((503, 200, 200), [503, 200, 200], True), ([503, 200], [503, 200, 200], False),
    ({"Name": "x-course", "value": "meshlab"}, {"name": "x-course", "value": "meshlab"}, True),
    ({"name": "x-course"}, {"name": "x-course", "value": "meshlab"}, False),
])
def test_graders_are_exact_up_to_case_and_whitespace(answer: object, expected: object, ok: bool) -> None:
    assert same(answer, expected) is ok


def test_a_wrong_answer_is_feedback_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    ex = Exercises(False)
    with pytest.raises(NotYet) as e:
        ex.check("03.2", 3, 2, hint="count the endpoints", evidence="the endpoints table")
    lines = e.value._render_traceback_()
    assert lines[0].startswith("✗ exercise 03.2: your answer 3 is not what the lab observed")
    assert any("hint: count the endpoints" in line for line in lines)
    assert not any("Traceback" in line or "File " in line for line in lines)
    assert "the endpoints table" in capsys.readouterr().out, "the evidence is shown when the answer is wrong too"
    assert ex.check("03.2", 2, 2, hint="count the endpoints", evidence="the endpoints table") is None  # no stray value
    out = capsys.readouterr().out
    assert "the endpoints table" in out and "✓ exercise 03.2: right" in out


def test_a_grader_that_cannot_handle_the_answer_is_feedback_too() -> None:
    with pytest.raises(NotYet, match=r"(?s)could not be checked \(TypeError.*hint: a number"):
        Exercises(False).check("03.3", "two", lambda a: a + 1 == 3, hint="a number")


def test_unanswered_stops_with_a_friendly_line_and_solutions_fail_hard() -> None:
    ex = Exercises(False)
    with pytest.raises(NotYet, match="exercise 02.1 is waiting for your answer") as e:
        ex.stop_unless_answered("02.1", ...)
    assert len(e.value._render_traceback_()) == 1
    ex.stop_unless_answered("02.1", 0)  # an answer, even a falsy one, lets Run All go on
    with pytest.raises(NotYet, match="02.1 not answered yet"):
        ex.check("02.1", ..., 2, hint="h")
    solved = Exercises(True)
    with pytest.raises(AssertionError, match=r"exercise 02\.1 has no answer although solutions are on"):
        solved.stop_unless_answered("02.1", ...)
    with pytest.raises(AssertionError, match=r"exercise 02\.1 has no answer"):
        solved.check("02.1", ..., 2, hint="h")
    with pytest.raises(AssertionError, match=r"the solution's answer 3 is not what the lab observed") as wrong:
        solved.check("02.1", 3, 2, hint="h")
    assert not isinstance(wrong.value, NotYet), "CI must fail hard, with a traceback"


def test_once_runs_an_experiment_the_first_time_only() -> None:
    ex = Exercises(False)
    runs: list[int] = []
    assert ex.once("02.1", lambda: runs.append(1) or len(runs)) == 1
    assert ex.once("02.1", lambda: runs.append(1) or len(runs)) == 1
    assert runs == [1]


def test_the_environment_turns_solutions_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "1")
    assert Exercises(False).solutions is True
    monkeypatch.setenv(ENV, "0")
    assert Exercises(False).solutions is False
    assert Exercises(True).solutions is True
    monkeypatch.setenv(ENV, "maybe")
    with pytest.raises(MeshlabError, match="MESHLAB_SOLUTIONS"):
        Exercises(False)


# ---- quizzes ---------------------------------------------------------------------------------------

def test_quiz_order_is_stable_per_learner_and_differs_between_learners() -> None:
    a1, a2 = Quiz("03", QUESTIONS, "ada"), Quiz("03", QUESTIONS, "ada")
    assert a1.shown == a2.shown
    orders = {tuple(tuple(opts) for _, opts, _ in Quiz("03", QUESTIONS, f"learner{i}").shown) for i in range(20)}
    assert len(orders) > 5
    for _, options, correct in a1.shown:
        assert len(options) == 4


def test_answer_positions_are_balanced_for_every_seed() -> None:
    for seed in ("ada", "bob", "handout", "x"):
        positions = answer_positions(9, 4, seed)
        assert sorted(positions.count(i) for i in range(4)) == [2, 2, 2, 3]


def test_a_skewed_key_is_named() -> None:
    assert key_skew(list("b" * 35 + "acdacda")) is not None and "35 of 42" in key_skew(list("b" * 35 + "acdacda"))
    assert key_skew(list("abcdabcdab")) is None
    assert key_skew(list("bbb")) is not None


def test_quiz_prints_text_outside_a_kernel_and_the_key_with_solutions(capsys: pytest.CaptureFixture[str]) -> None:
    Exercises(False).quiz("03", QUESTIONS)
    out = capsys.readouterr().out
    assert "1. Which address" in out and "the east-west gateway on 15443" in out
    assert "answer:" not in out, "the learner's quiz must not give the answers away"
    Exercises(True).quiz("03", QUESTIONS)
    key = Quiz("03", QUESTIONS, "handout").key
    assert f"answer: {key[0]}) — split-horizon EDS" in capsys.readouterr().out


def test_the_catalogue_quiz_is_shown_by_lab_number(capsys: pytest.CaptureFixture[str]) -> None:
    Exercises(False).quiz("02")
    assert "Quiz 02" in capsys.readouterr().out
    with pytest.raises(MeshlabError, match="no quiz for lab '99'"):
        Exercises(False).quiz("99")


def test_plain_text_answers_get_feedback(capsys: pytest.CaptureFixture[str]) -> None:
    ex = Exercises(False)
    ex.quiz("03", QUESTIONS)
    key = ex.quizzes["03"].key
    wrong = next(letter for letter in "abcd" if letter != key[1])
    ex.answer("03", 1, key[0])
    ex.answer("03", 2, wrong.upper())
    out = capsys.readouterr().out
    assert "1. ✓ right: split-horizon" in out and f"2. ✗ not {wrong})" in out
    with pytest.raises(MeshlabError, match="not an option"):
        ex.answer("03", 1, "e")
    with pytest.raises(MeshlabError, match="questions 1..2"):
        ex.answer("03", 3, "a")
    with pytest.raises(MeshlabError, match="no quiz '04'"):
        ex.answer("04", 1, "a")


@pytest.mark.parametrize("questions, problem", [
    ([], "no questions"),
    ([Question("q?", "a", (), "why")], "two or more distinct"),
    ([Question("q?", "a", ("a", "b", "c"), "why")], "two or more distinct"),
])
def test_malformed_quizzes_are_refused(questions: list, problem: str) -> None:
    with pytest.raises(MeshlabError, match=problem):
        Quiz("05", questions, "ada")


def test_the_widget_grades_the_chosen_options() -> None:
    quiz = Quiz("03", QUESTIONS, "ada")
    box = quiz.widget()
    radios = [c for c in box.children if type(c).__name__ == "RadioButtons"]
    notes = [box.children[box.children.index(r) + 1] for r in radios]
    button, score = box.children[-1].children
    (_, _, right0), (_, _, right1) = quiz.shown
    radios[0].value = right0
    radios[1].value = (right1 + 1) % 4
    button.click()
    assert "right" in notes[0].value and "not " in notes[1].value
    assert "1/2" in score.value
