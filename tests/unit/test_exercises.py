"""meshlab.exercises: grading against observed values, the solutions switch, quizzes (widget and text)."""

from __future__ import annotations

import pytest

from meshlab.errors import MeshlabError
from meshlab.exercises import ENV, Exercises, Quiz

QUESTIONS = [
    ("Which address does a remote endpoint show on separate networks?",
     ["the pod IP", "the east-west gateway on 15443", "the node IP"], 1,
     "split-horizon EDS replaces remote pods by their network's gateway"),
    ("Who fetches a WasmPlugin module?", ["istiod", "istio-agent"], 1, "the agent next to Envoy fetches it"),
]


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)


def test_learner_mode_reports_an_unattempted_exercise(capsys: pytest.CaptureFixture[str]) -> None:
    ex = Exercises(False)
    assert ex.solutions is False
    ex.check("02.1", ..., lambda a: a == 2, hint="count them")
    assert "exercise 02.1 not attempted yet" in capsys.readouterr().out


def test_solutions_mode_refuses_an_unattempted_exercise() -> None:
    with pytest.raises(AssertionError, match=r"exercise 02\.1 has no answer although solutions are on"):
        Exercises(True).check("02.1", ..., lambda a: True, hint="h")


def test_a_wrong_answer_raises_with_the_hint_and_a_right_one_passes(capsys: pytest.CaptureFixture[str]) -> None:
    observed = 2
    ex = Exercises(False)
    with pytest.raises(AssertionError, match=r"(?s)your answer 3 does not match.*hint: count the endpoints"):
        ex.check("03.2", 3, lambda a: a == observed, hint="count the endpoints")
    assert ex.check("03.2", 2, lambda a: a == observed, hint="count the endpoints") is None  # no stray True in a cell
    assert "✓ exercise 03.2" in capsys.readouterr().out


def test_a_predicate_that_cannot_handle_the_answer_is_a_failed_check_with_the_hint() -> None:
    with pytest.raises(AssertionError, match=r"(?s)could not be checked \(TypeError.*hint: a number"):
        Exercises(False).check("03.3", "two", lambda a: a + 1 == 3, hint="a number")


def test_the_environment_turns_solutions_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "1")
    assert Exercises(False).solutions is True
    monkeypatch.setenv(ENV, "0")
    assert Exercises(False).solutions is False
    assert Exercises(True).solutions is True
    monkeypatch.setenv(ENV, "maybe")
    with pytest.raises(MeshlabError, match="MESHLAB_SOLUTIONS"):
        Exercises(False)


def test_quiz_prints_text_outside_a_kernel_and_the_key_with_solutions(capsys: pytest.CaptureFixture[str]) -> None:
    Exercises(False).quiz("03", QUESTIONS)
    out = capsys.readouterr().out
    assert "1. Which address" in out and "b) the east-west gateway on 15443" in out
    assert "answer:" not in out, "the learner's quiz must not give the answers away"
    Exercises(True).quiz("03", QUESTIONS)
    assert "answer: b) — split-horizon EDS" in capsys.readouterr().out


def test_plain_text_answers_get_feedback(capsys: pytest.CaptureFixture[str]) -> None:
    ex = Exercises(False)
    ex.quiz("03", QUESTIONS)
    ex.answer("03", 1, "b")
    ex.answer("03", 2, "A")
    out = capsys.readouterr().out
    assert "1. ✓ right: split-horizon" in out and "2. ✗ not a)" in out
    with pytest.raises(MeshlabError, match="not an option"):
        ex.answer("03", 1, "d")
    with pytest.raises(MeshlabError, match="questions 1..2"):
        ex.answer("03", 3, "a")
    with pytest.raises(MeshlabError, match="no quiz '04'"):
        ex.answer("04", 1, "a")


@pytest.mark.parametrize("questions, problem", [
    ([], "no questions"),
    ([("q?", ["a", "b"], 1)], "3 parts"),
    ([("q?", ["a"], 0, "why")], "two or more distinct"),
    ([("q?", ["a", "a"], 0, "why")], "two or more distinct"),
    ([("q?", ["a", "b"], 2, "why")], "correct index 2"),
    ([("q?", ["a", "b"], 1, " ")], "does not say why"),
])
def test_malformed_quizzes_are_refused(questions: list, problem: str) -> None:
    with pytest.raises(MeshlabError, match=problem):
        Quiz("05", questions)


def test_the_widget_grades_the_chosen_options() -> None:
    box = Quiz("03", QUESTIONS).widget()
    radios = [c for c in box.children if type(c).__name__ == "RadioButtons"]
    notes = [box.children[box.children.index(r) + 1] for r in radios]
    button, score = box.children[-1].children
    radios[0].value = 1  # right
    radios[1].value = 0  # wrong
    button.click()
    assert "right" in notes[0].value and "not a)" in notes[1].value
    assert "1/2" in score.value
