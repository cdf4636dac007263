"""Quiz authoring (meshlab/quizzes.py): every lab has a quiz of four-option questions with a reason, one
"explain this plot or number" question, and an answer key no letter dominates, for any learner."""

from __future__ import annotations

import pytest

from meshlab.exercises import HANDOUT_SEED, Quiz, key_skew, question_problems
from meshlab.labs import LABS
from meshlab.quizzes import QUIZZES

SEEDS = [HANDOUT_SEED, "ada@host", "bob@host", "root@ci", *(f"learner{i}" for i in range(20))]


@pytest.mark.parametrize("lab", [i.number for i in LABS])
def test_every_lab_has_a_quiz_that_meets_the_rules(lab: str) -> None:
    questions = QUIZZES.get(lab)
    assert questions, f"lab {lab} has no quiz in meshlab/quizzes.py"
    assert len(questions) >= 3, f"quiz {lab}: 3 or more questions"
    problems = [f"question {n}: {p}" for n, q in enumerate(questions, 1) for p in question_problems(q)]
    assert not problems, f"quiz {lab}:\n  " + "\n  ".join(problems)
    assert sum(q.explain for q in questions) >= 1, f'quiz {lab} needs an "explain this plot or number" question (explain=True)'
    texts = [q.text for q in questions]
    assert len(set(texts)) == len(texts), f"quiz {lab} repeats a question"


@pytest.mark.parametrize("seed", SEEDS)
def test_no_answer_letter_is_a_safe_guess_for_any_learner(seed: str) -> None:
    course: list[str] = []
    for lab, questions in QUIZZES.items():
        key = Quiz(lab, questions, seed).key
        assert key_skew(key) is None, f"quiz {lab} for {seed}: {key_skew(key)}"
        course += key
    assert key_skew(course) is None, f"the course's key for {seed}: {key_skew(course)}"


def test_the_right_option_is_not_given_away_by_its_length() -> None:
    """Classic tells: the right answer is the longest (the most careful), or the shortest. Sometimes, not as a rule."""
    questions = [q for qs in QUIZZES.values() for q in qs]
    for tell, pick in (("longest", max), ("shortest", min)):
        n = sum(pick([q.right, *q.wrong], key=len) == q.right for q in questions)
        assert n <= 0.4 * len(questions), f"the right option is the {tell} in {n} of {len(questions)} questions"
