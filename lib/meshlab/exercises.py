"""Exercises and quizzes inside the lab notebooks, graded against what the lab observed.

    ex = Exercises(solutions)                 # `solutions` is the notebook's papermill parameter
    answer = ...                              # exercise cell: the learner replaces the Ellipsis
    if ex.solutions:                          # solution cell (tagged `solution`, source hidden)
        answer = 3
    ex.check("02.1", answer, lambda a: a == observed, hint="count the endpoints whose ...")
    ex.quiz("02", [("Question?", ["a", "b", "c"], 1, "why b is right")])

CI runs every lab with the solutions filled in (papermill parameter ``solutions=True``, or
``MESHLAB_SOLUTIONS=1`` for runners that cannot pass parameters, such as nbval), so every exercise is
known to be solvable and an unanswered one fails the run instead of passing silently.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import MeshlabError

ENV = "MESHLAB_SOLUTIONS"
_TRUE, _FALSE = ("1", "true", "yes"), ("", "0", "false", "no")


def solutions_from_env() -> bool:
    """``MESHLAB_SOLUTIONS=1`` turns solutions on whatever the notebook's parameter says."""
    raw = os.environ.get(ENV, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise MeshlabError(f"{ENV}={os.environ[ENV]!r} is neither on nor off", f"set {ENV}=1 (solutions) or unset it")


@dataclass(frozen=True)
class Question:
    text: str
    options: tuple[str, ...]
    correct: int  # index into options
    why: str

    def feedback(self, choice: int | None) -> tuple[bool, str]:
        """(right?, the line the learner sees) for the option at index ``choice``."""
        if choice is None:
            return False, "pick an answer first"
        if choice == self.correct:
            return True, f"✓ right: {self.why}"
        return False, f"✗ not {_letter(choice)}) — think again"


def _letter(i: int) -> str:
    return "abcdefghijklmnopqrstuvwxyz"[i]


class Quiz:
    """A short multiple-choice quiz: ipywidgets in a live notebook, plain text everywhere else."""

    def __init__(self, lab: str, questions: Sequence[tuple[str, Sequence[str], int, str]]) -> None:
        if not questions:
            raise MeshlabError(f"quiz {lab} has no questions", "pass (question, options, correct index, why) tuples")
        self.lab = lab
        self.questions: list[Question] = []
        for n, q in enumerate(questions, 1):
            if len(q) != 4:
                raise MeshlabError(f"quiz {lab} question {n} has {len(q)} parts, expected 4",
                                   "write it as (question, [options], index of the right option, why it is right)")
            text, options, correct, why = q
            if len(options) < 2 or len(set(options)) != len(options):
                raise MeshlabError(f"quiz {lab} question {n} needs two or more distinct options", "add options")
            if not isinstance(correct, int) or not 0 <= correct < len(options):
                raise MeshlabError(f"quiz {lab} question {n}: correct index {correct!r} is not one of the "
                                   f"{len(options)} options", f"use 0..{len(options) - 1}")
            if not why.strip():
                raise MeshlabError(f"quiz {lab} question {n} does not say why its answer is right", "add the reason")
            self.questions.append(Question(text, tuple(options), correct, why))

    def text(self, answers: bool = False) -> str:
        """The quiz as plain text; with ``answers``, the answer key and the reasons."""
        lines = [f"Quiz {self.lab}"]
        for n, q in enumerate(self.questions, 1):
            lines.append(f"\n{n}. {q.text}")
            lines += [f"   {_letter(i)}) {o}" for i, o in enumerate(q.options)]
            if answers:
                lines.append(f"   answer: {_letter(q.correct)}) — {q.why}")
        if not answers:
            lines.append(f'\nanswer in a cell: ex.answer("{self.lab}", 1, "b")')
        return "\n".join(lines)

    def answer(self, number: int, choice: str) -> bool:
        """Grade one answer given as a letter; prints the feedback and returns whether it was right."""
        if not 1 <= number <= len(self.questions):
            raise MeshlabError(f"quiz {self.lab} has questions 1..{len(self.questions)}, not {number}")
        q = self.questions[number - 1]
        letters = [_letter(i) for i in range(len(q.options))]
        if choice.strip().lower() not in letters:
            raise MeshlabError(f"{choice!r} is not an option of question {number}", f"answer one of {', '.join(letters)}")
        ok, line = q.feedback(letters.index(choice.strip().lower()))
        print(f"{number}. {line}")
        return ok

    def widget(self) -> Any:
        """An ipywidgets form: one radio group per question and a button that gives feedback."""
        import ipywidgets as w

        radios, notes, rows = [], [], []
        for n, q in enumerate(self.questions, 1):
            radio = w.RadioButtons(options=[(f"{_letter(i)}) {o}", i) for i, o in enumerate(q.options)],
                                   value=None, layout=w.Layout(width="auto"))
            note = w.HTML()
            radios.append(radio)
            notes.append(note)
            rows += [w.HTML(f"<b>{n}. {_html(q.text)}</b>"), radio, note]
        score = w.HTML()
        button = w.Button(description="check answers")

        def grade(_: Any) -> None:
            right = 0
            for q, radio, note in zip(self.questions, radios, notes):
                ok, line = q.feedback(radio.value)
                right += ok
                note.value = f"<span style='color:{'green' if ok else 'firebrick'}'>{_html(line)}</span>"
            score.value = f"<b>{right}/{len(self.questions)}</b>"

        button.on_click(grade)
        return w.VBox([w.HTML(f"<h4>Quiz {_html(self.lab)}</h4>"), *rows, w.HBox([button, score])])


def _html(s: str) -> str:
    import html

    return html.escape(s)


def _widgets_live() -> bool:
    """True in a Jupyter kernel with ipywidgets installed (a frontend may render the widget)."""
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class Exercises:
    """The exercises and quizzes of one lab notebook."""

    def __init__(self, solutions: bool = False) -> None:
        self.solutions = bool(solutions) or solutions_from_env()
        self.quizzes: dict[str, Quiz] = {}

    def check(self, id: str, answer: Any, predicate: Callable[[Any], bool], hint: str) -> None:
        """Grade ``answer``: ``...`` means not attempted (an error when solutions are on). Prints the verdict
        (returns nothing, so a check cell shows only that)."""
        if answer is Ellipsis:
            if self.solutions:
                raise AssertionError(f"exercise {id} has no answer although solutions are on: "
                                     "its solution cell must assign it under `if ex.solutions:`")
            print(f"exercise {id} not attempted yet: replace the ... in the exercise cell above with your answer, "
                  "run it, then run this cell again")
            return
        who = "the solution's answer" if self.solutions else "your answer"
        try:
            ok = predicate(answer)
        except Exception as e:
            raise AssertionError(f"exercise {id}: {who} {answer!r} could not be checked ({type(e).__name__}: {e})\n"
                                 f"  hint: {hint}") from e
        if not ok:
            raise AssertionError(f"exercise {id}: {who} {answer!r} does not match what the lab observed\n  hint: {hint}")
        print(f"✓ exercise {id}: {answer!r} is right")

    def quiz(self, lab: str, questions: Sequence[tuple[str, Sequence[str], int, str]]) -> None:
        """Show a quiz: a widget when a frontend can render one (with the text behind it), else text.

        With solutions on, the answer key is printed too (an executed notebook becomes a handout).
        """
        q = Quiz(lab, questions)
        self.quizzes[lab] = q
        if _widgets_live():
            from IPython.display import display

            bundle = q.widget()._repr_mimebundle_()
            bundle["text/plain"] = q.text()  # what a viewer without the widget's state shows
            display(bundle, raw=True)
        else:
            print(q.text())
        if self.solutions:
            print(q.text(answers=True))

    def answer(self, lab: str, number: int, choice: str) -> None:
        """Answer quiz question ``number`` of ``lab`` with a letter (the plain-text way); prints the feedback."""
        if lab not in self.quizzes:
            raise MeshlabError(f"no quiz {lab!r} has been shown", "run the quiz cell first")
        self.quizzes[lab].answer(number, choice)
