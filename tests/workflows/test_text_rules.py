"""Pure text rules: slugs, "did you mean" suggestions and what counts as a URI."""

from __future__ import annotations

import pytest

from workflows.slugs import MAX_SLUG, closest, slug_problem, slugify
from workflows.uris import uri_problem


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Churn events", "churn-events"),
        ("  Churn   events  ", "churn-events"),
        ("Fraud Scorer v2", "fraud-scorer-v2"),
        ("Café Übersicht", "cafe-ubersicht"),
        ("façade naïve résumé", "facade-naive-resume"),
        ("ﬁne-tuned", "fine-tuned"),  # NFKD splits the ligature
        ("GPT-4o (prod)!", "gpt-4o-prod"),
        ("a/b\\c.d_e", "a-b-c-d-e"),
        ("--leading and trailing--", "leading-and-trailing"),
        ("ALL CAPS", "all-caps"),
        ("2024 Q1 loans", "2024-q1-loans"),
        ("模型", ""),
        ("!!!", ""),
        ("", ""),
    ],
)
def test_slugify(name, slug):
    assert slugify(name) == slug


def test_slugify_caps_the_length_without_a_trailing_hyphen():
    # 63 letters, then a space: a plain cut at 64 would end on a hyphen.
    slug = slugify("a" * 63 + " tail of the name")
    assert slug == "a" * 63
    long = slugify("word " * 40)
    assert len(long) <= MAX_SLUG
    assert not long.endswith("-")
    assert slug_problem(long) is None


@pytest.mark.parametrize("slug", ["a", "churn-events", "fraud-scorer-v2", "2024", "a" * MAX_SLUG])
def test_good_slugs(slug):
    assert slug_problem(slug) is None


@pytest.mark.parametrize(
    ("slug", "expected"),
    [
        ("", "at least one letter or digit"),
        ("a" * (MAX_SLUG + 1), f"{MAX_SLUG} characters"),
        ("Churn", "lowercase"),
        ("churn events", "lowercase"),
        ("churn--events", "single hyphens"),
        ("-churn", "single hyphens"),
        ("churn-", "single hyphens"),
        ("churn_events", "lowercase"),
        ("café", "lowercase"),
    ],
)
def test_bad_slugs(slug, expected):
    problem = slug_problem(slug)
    assert problem is not None and expected in problem


def test_every_slugified_name_is_either_empty_or_acceptable():
    names = ["Churn events", "Café", "x" * 200, "a - b", "Ω-model", "___", "v1.2.3"]
    for name in names:
        slug = slugify(name)
        assert slug == "" or slug_problem(slug) is None, name


SLUGS = ["churn-events", "churn-model", "fraud-scorer", "fraud-scorer-v2", "loan-data", "credit-risk-system"]


@pytest.mark.parametrize(
    ("word", "first"),
    [
        ("churn-event", "churn-events"),       # a typo
        ("fraud-scorr", "fraud-scorer"),       # a missing letter
        ("CHURN-EVENTS", "churn-events"),      # case does not matter
        ("credit", "credit-risk-system"),      # a prefix
        ("risk", "credit-risk-system"),        # a substring
    ],
)
def test_closest_puts_the_best_match_first(word, first):
    assert closest(word, SLUGS)[0] == first


def test_closest_returns_at_most_limit_without_duplicates():
    found = closest("churn", SLUGS)
    assert set(found) == {"churn-events", "churn-model"}
    assert len(found) == len(set(found))
    assert len(closest("e", SLUGS)) == 3
    assert len(closest("e", SLUGS, limit=5)) == 5


@pytest.mark.parametrize("word", ["zzzzzz", "quantum-ledger"])
def test_closest_suggests_nothing_far_away(word):
    assert closest(word, SLUGS) == []


def test_closest_of_no_candidates_is_empty():
    assert closest("churn", []) == []


@pytest.mark.parametrize(
    "uri",
    [
        "s3://bucket/path/to/data.parquet",
        "s3://bucket",
        "gs://bucket/x",
        "https://host/x",
        "http://example.com",
        "HTTPS://Example.com/Page",
        "file:///x",
        "postgresql://h/db",
        "hf://datasets/org/name",
        "abfss://container@account.dfs.core.windows.net/path",
        "mailto:ml-team@example.com",
        "urn:isbn:0451450523",
    ],
)
def test_uris_that_are_accepted(uri):
    assert uri_problem(uri) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("not a uri", "spaces"),
        ("foo bar", "spaces"),
        ("s3://bucket/my file", "spaces"),
        ("s3://bucket/\tx", "spaces"),
        ("mailto", "scheme"),
        ("bucket/path", "scheme"),
        ("/var/data/x.csv", "scheme"),
        ("://host/x", "scheme"),
        ("", "scheme"),
        ("http://", "nothing after it"),
        ("s3://", "nothing after it"),
        ("s3:", "nothing after it"),
        ("file:///", "nothing after it"),
        ("https:///path", "needs a host"),
        ("http:/path", "needs a host"),
    ],
)
def test_uris_that_are_refused(value, expected):
    problem = uri_problem(value)
    assert problem is not None and expected in problem


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("https://docs.example.com/card", None),
        ("http://wiki.internal/page", None),
        ("s3://bucket/card.pdf", "http or https"),
        ("file:///card.pdf", "http or https"),
        ("https:///card", "needs a host"),
    ],
)
def test_uris_limited_to_schemes(value, problem):
    found = uri_problem(value, schemes=("http", "https"))
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found
