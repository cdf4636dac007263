"""Exercises and quizzes inside the lab notebooks, graded against what the lab observed.

Every exercise is three cells::

    answer = ...                              # 1. exercise: the learner replaces the Ellipsis
    if ex.solutions:                          # 2. solution (tagged `solution`, source hidden)
        answer = 3
    ex.stop_unless_answered("02.1", answer)   #    ... and the gate: "Run All" stops here until answered
    eps = lab.endpoints(...)                  # 3. check: the experiment, then the verdict
    ex.check("02.1", answer, len(eps), hint="count the endpoints ...", evidence=eps)

and each lab has a quiz, whose questions and key live in :mod:`meshlab.quizzes` (not in the cell)::

    ex.quiz("02")

**Feedback, not tracebacks.** For a learner, a wrong or missing answer raises :class:`NotYet`: IPython
shows only its message (the verdict and the hint; ``_render_traceback_``), and like any error it stops
"Run All" at that cell -- so the experiment after a prediction never runs before the learner predicted.

**Exact graders.** Give ``check`` the observed value and it compares after normalising case and
whitespace of text (nothing else: ``"cluster"`` is not ``"cluster1"``); a callable grades what needs an
experiment (apply the learner's YAML, send traffic). A check cell must be safe to re-run: it shows its
evidence (``evidence=``) whatever the verdict, and it must not change the lab on each run (use
``ex.once``) -- the drill (``tests/labs/drill.py``) runs every check wrong twice, empty, unanswered, then right.

**Solutions.** CI runs every lab with the solutions filled in (papermill parameter ``solutions=True``, or
``MESHLAB_SOLUTIONS=1`` for runners that cannot pass parameters, such as nbval): then a wrong or missing
answer is an ``AssertionError`` with its traceback, so a broken exercise fails the run.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import random
import socket
from collections.abc import Callable, Sequence
from typing import Any

from .errors import MeshlabError
from .quizzes import QUIZZES, Question

ENV = "MESHLAB_SOLUTIONS"
LEARNER_ENV = "MESHLAB_LEARNER"  # the seed of a learner's quiz order (default: user@host)
HANDOUT_SEED = "handout"  # the quiz order with solutions on: executed notebooks are reproducible
_TRUE, _FALSE = ("1", "true", "yes"), ("", "0", "false", "no")


def solutions_from_env() -> bool:
    """``MESHLAB_SOLUTIONS=1`` turns solutions on whatever the notebook's parameter says."""
    raw = os.environ.get(ENV, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise MeshlabError(f"{ENV}={os.environ[ENV]!r} is neither on nor off", f"set {ENV}=1 (solutions) or unset it")


class NotYet(Exception):
    """An exercise that is not (yet) right, shown as feedback: IPython renders only these lines, no
    traceback. Raising it stops "Run All" at this cell, as any error does."""

    def __init__(self, id: str, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.id = id
        self.lines = lines

    def _render_traceback_(self) -> list[str]:  # IPython's hook: these lines replace the traceback
        return list(self.lines)


# ---------------------------------------------------------------------------------------------- grading

def normalise(value: Any) -> Any:
    """What graders compare: text with case and whitespace runs ignored (inside lists, sets, dicts too)."""
    if isinstance(value, str):
        return " ".join(value.split()).casefold()
    if isinstance(value, (list, tuple)):
        return tuple(normalise(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return frozenset(normalise(v) for v in value)
    if isinstance(value, dict):
        return {normalise(k): normalise(v) for k, v in value.items()}
    return value


def same(answer: Any, expected: Any) -> bool:
    """Exact grading: ``answer`` equals ``expected`` up to case and whitespace of text. Types must agree
    (a number for a number -- ``True`` is no number --, text for text; a set may be given as a list)."""
    if isinstance(expected, bool) or isinstance(answer, bool):
        return type(answer) is type(expected) and answer == expected
    if isinstance(expected, (int, float)):
        return isinstance(answer, (int, float)) and answer == expected
    if isinstance(expected, str):
        return isinstance(answer, str) and normalise(answer) == normalise(expected)
    if isinstance(expected, (set, frozenset)):
        return isinstance(answer, (set, frozenset, list, tuple)) and normalise(set(answer)) == normalise(expected)
    if isinstance(expected, (list, tuple)):
        return isinstance(answer, (list, tuple)) and len(answer) == len(expected) and all(
            same(a, e) for a, e in zip(answer, expected))
    if isinstance(expected, dict):
        if not isinstance(answer, dict) or len(answer) != len(expected):
            return False
        given = {normalise(k): v for k, v in answer.items()}
        return all(normalise(k) in given and same(given[normalise(k)], v) for k, v in expected.items())
    return bool(answer == expected)


def _show(value: Any) -> None:
    """Display ``value`` as the notebook would display a cell's last expression (print outside IPython)."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        print(value)
        return
    if get_ipython() is None:
        print(value)
    else:
        display(value)


def _short(answer: Any) -> str:
    text = repr(answer)
    return text if len(text) <= 120 else text[:117] + "..."


# ---------------------------------------------------------------------------------------------- quizzes

def _letter(i: int) -> str:
    return "abcdefghijklmnopqrstuvwxyz"[i]


def learner_seed() -> str:
    """Who is answering: the quiz order is stable for one learner and differs between learners."""
    explicit = os.environ.get(LEARNER_ENV, "").strip()
    if explicit:
        return explicit
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment: the host alone still gives a stable order
        user = "learner"
    return f"{user}@{socket.gethostname()}"


def answer_positions(n: int, options: int, seed: str) -> list[int]:
    """Where the right option of each of ``n`` questions goes: balanced (every letter as often as
    possible) and shuffled by ``seed``, so no letter is the safe guess."""
    rng = random.Random(hashlib.sha256(f"positions:{seed}".encode()).hexdigest())
    start = rng.randrange(options)  # which letters get the extra questions beyond a multiple of ``options``
    positions = [(start + i) % options for i in range(n)]
    rng.shuffle(positions)
    return positions


class Quiz:
    """A short multiple-choice quiz: ipywidgets in a live notebook, plain text everywhere else."""

    def __init__(self, lab: str, questions: Sequence[Question], seed: str) -> None:
        if not questions:
            raise MeshlabError(f"quiz {lab} has no questions", f"add questions for lab {lab} to meshlab/quizzes.py")
        for n, q in enumerate(questions, 1):
            options = [q.right, *q.wrong]
            if not q.wrong or len({normalise(o) for o in options}) != len(options):
                raise MeshlabError(f"quiz {lab} question {n} needs two or more distinct options", "fix it in meshlab/quizzes.py")
        self.lab = lab
        self.seed = seed
        n_options = min(len(q.wrong) for q in questions) + 1
        positions = answer_positions(len(questions), n_options, f"{seed}:{lab}")
        self.shown: list[tuple[Question, list[str], int]] = []
        for i, (q, at) in enumerate(zip(questions, positions)):
            rng = random.Random(hashlib.sha256(f"options:{seed}:{lab}:{i}".encode()).hexdigest())
            options, correct = q.options(at, rng)
            self.shown.append((q, options, correct))

    @property
    def key(self) -> list[str]:
        """The right letters, in this learner's order."""
        return [_letter(correct) for _, _, correct in self.shown]

    def text(self, answers: bool = False) -> str:
        """The quiz as plain text; with ``answers``, the answer key and the reasons."""
        lines = [f"Quiz {self.lab}"]
        for n, (q, options, correct) in enumerate(self.shown, 1):
            lines.append(f"\n{n}. {q.text}")
            lines += [f"   {_letter(i)}) {o}" for i, o in enumerate(options)]
            if answers:
                lines.append(f"   answer: {_letter(correct)}) — {q.why}")
        if not answers:
            lines.append(f'\nanswer in a cell: ex.answer("{self.lab}", 1, "b")')
        return "\n".join(lines)

    def feedback(self, number: int, choice: int | None) -> tuple[bool, str]:
        """(right?, the line the learner sees) for option index ``choice`` of question ``number``."""
        q, options, correct = self.shown[number - 1]
        if choice is None:
            return False, "pick an answer first"
        if choice == correct:
            return True, f"✓ right: {q.why}"
        return False, f"✗ not {_letter(choice)}) — think again"

    def answer(self, number: int, choice: str) -> bool:
        """Grade one answer given as a letter; prints the feedback and returns whether it was right."""
        if not 1 <= number <= len(self.shown):
            raise MeshlabError(f"quiz {self.lab} has questions 1..{len(self.shown)}, not {number}")
        letters = [_letter(i) for i in range(len(self.shown[number - 1][1]))]
        picked = choice.strip().lower() if isinstance(choice, str) else ""
        if picked not in letters:
            raise MeshlabError(f"{choice!r} is not an option of question {number}", f"answer one of {', '.join(letters)}")
        ok, line = self.feedback(number, letters.index(picked))
        print(f"{number}. {line}")
        return ok

    def widget(self) -> Any:
        """An ipywidgets form: one radio group per question and a button that gives feedback."""
        import ipywidgets as w

        radios, notes, rows = [], [], []
        for n, (q, options, _) in enumerate(self.shown, 1):
            radio = w.RadioButtons(options=[(f"{_letter(i)}) {o}", i) for i, o in enumerate(options)],
                                   value=None, layout=w.Layout(width="auto"))
            note = w.HTML()
            radios.append(radio)
            notes.append(note)
            rows += [w.HTML(f"<b>{n}. {_html(q.text)}</b>"), radio, note]
        score = w.HTML()
        button = w.Button(description="check answers")

        def grade(_: Any) -> None:
            right = 0
            for n, (radio, note) in enumerate(zip(radios, notes), 1):
                ok, line = self.feedback(n, radio.value)
                right += ok
                note.value = f"<span style='color:{'green' if ok else 'firebrick'}'>{_html(line)}</span>"
            score.value = f"<b>{right}/{len(self.shown)}</b>"

        button.on_click(grade)
        return w.VBox([w.HTML(f"<h4>Quiz {_html(self.lab)}</h4>"), *rows, w.HBox([button, score])])


def question_problems(q: Question) -> list[str]:
    """What keeps one question from the quiz rules: four distinct options (one right, three wrong), a reason."""
    problems = []
    options = [q.right, *q.wrong]
    if len(q.wrong) != 3:
        problems.append(f"needs 3 wrong options (real misconceptions), has {len(q.wrong)}")
    if len({normalise(o) for o in options}) != len(options) or not all(o.strip() for o in options):
        problems.append("options must be distinct and not empty")
    if not q.text.strip() or not q.why.strip():
        problems.append("needs the question and the reason its answer is right")
    return problems


def key_skew(keys: Sequence[str], options: int = 4) -> str | None:
    """Why an answer key is skewed (one letter is a safe guess), or None: no letter may hold more than its
    fair share plus a tenth of the questions (at least one) -- 35 "b" of 42 fails, an even spread passes."""
    if not keys:
        return None
    counts = {_letter(i): keys.count(_letter(i)) for i in range(options)}
    fair = -(-len(keys) // options)  # ceil
    worst = max(counts, key=lambda k: counts[k])
    if counts[worst] > fair + (max(1, len(keys) // 10) if len(keys) > options else 0):
        return f"{counts[worst]} of {len(keys)} answers are {worst!r} ({counts})"
    return None


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


# ---------------------------------------------------------------------------------------------- exercises

class Exercises:
    """The exercises and quizzes of one lab notebook."""

    def __init__(self, solutions: bool = False) -> None:
        self.solutions = bool(solutions) or solutions_from_env()
        self.quizzes: dict[str, Quiz] = {}
        self._once: dict[str, Any] = {}

    def _refuse(self, id: str, lines: list[str]) -> None:
        if self.solutions:
            raise AssertionError("\n".join(lines))
        raise NotYet(id, lines)

    def stop_unless_answered(self, id: str, answer: Any) -> None:
        """The gate after an exercise: "Run All" stops here (with a friendly line, no traceback) until the
        learner has answered, so nothing below runs the experiment before the prediction."""
        if answer is not Ellipsis:
            return
        if self.solutions:
            raise AssertionError(f"exercise {id} has no answer although solutions are on: "
                                 "its solution cell must assign it under `if ex.solutions:`")
        raise NotYet(id, [f"✎ exercise {id} is waiting for your answer: replace the ... in the exercise cell above, "
                          "run that cell, then carry on from here (Run All stops here until you answer)."])

    def once(self, key: str, action: Callable[[], Any]) -> Any:
        """Run ``action`` the first time only and return its result ever after: an experiment that changes
        the lab (deploy a pod, start a load) inside a check cell, which the learner may run many times."""
        if key not in self._once:
            self._once[key] = action()
        return self._once[key]

    def check(self, id: str, answer: Any, expected: Any, hint: str, evidence: Any = None) -> None:
        """Grade ``answer`` and print the verdict (returns nothing, so the cell shows only that).

        ``expected`` is the observed value (compared by :func:`same`: exact, up to case and whitespace of
        text) or a callable ``answer -> bool`` for what needs an experiment. ``evidence`` (a table, a
        log, a number) is shown before the verdict, right or wrong. ``...`` means not attempted.
        """
        if evidence is not None:
            _show(evidence)
        if answer is Ellipsis:
            if self.solutions:
                raise AssertionError(f"exercise {id} has no answer although solutions are on: "
                                     "its solution cell must assign it under `if ex.solutions:`")
            raise NotYet(id, [f"✎ exercise {id} not answered yet: replace the ... in the exercise cell above with "
                              "your answer, run it, then run this cell again."])
        who = "the solution's answer" if self.solutions else "your answer"
        try:
            ok = expected(answer) if callable(expected) else same(answer, expected)
        except Exception as e:  # the learner's answer broke the grader: that is feedback, not a crash
            self._refuse(id, [f"✗ exercise {id}: {who} {_short(answer)} could not be checked "
                              f"({type(e).__name__}: {e})", f"  hint: {hint}"])
            return
        if not ok:
            self._refuse(id, [f"✗ exercise {id}: {who} {_short(answer)} is not what the lab observed.",
                              f"  hint: {hint}",
                              "  change the answer in the exercise cell, run it, then run this cell again."])
        print(f"✓ exercise {id}: right")

    def quiz(self, lab: str, questions: Sequence[Question] | None = None) -> None:
        """Show lab ``lab``'s quiz (its questions from :mod:`meshlab.quizzes`): a widget when a frontend
        can render one (with the text behind it), else text. Options are shuffled, stable per learner.

        With solutions on, the order is the handout's and the answer key is printed too.
        """
        if questions is None:
            if lab not in QUIZZES:
                raise MeshlabError(f"no quiz for lab {lab!r}", "add its questions to meshlab/quizzes.py")
            questions = QUIZZES[lab]
        q = Quiz(lab, questions, HANDOUT_SEED if self.solutions else learner_seed())
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
