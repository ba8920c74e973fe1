"""Vietnamese questions reach the guide as the English question type it learned (museumtok/llm/intent.py)."""
import pytest

from museumtok.llm.guide import PHRASINGS
from museumtok.llm.intent import canonical_question, is_vietnamese, model_question, vietnamese_kind

# written for this test, independently of the guide's phrasing bank (which the rules were drafted from)
FRESH = [
    ("Gam màu chủ yếu là gì?", "colour"), ("Trong tranh có nhiều màu xanh không?", "colour"),
    ("Bức tranh này có tối không?", "brightness"), ("Tranh sáng sủa hay tối tăm?", "brightness"),
    ("Màu trong tranh ấm áp hay lạnh lẽo?", "warmth"), ("Ánh sáng chiếu từ phía nào?", "light"),
    ("Phần sáng nhất của tranh nằm ở đâu?", "light"),
    ("Nửa trên của bức tranh có màu gì so với nửa dưới?", "layout"),
    ("Tác phẩm này được vẽ vào năm bao nhiêu?", "date"), ("Bức tranh thuộc thế kỷ nào?", "date"),
    ("Ai là tác giả của bức này?", "artist"), ("Người vẽ bức tranh là ai?", "artist"),
    ("Bức tranh này tên gì vậy?", "title"), ("Nhan đề tác phẩm là gì?", "title"),
    ("Tranh được vẽ bằng sơn dầu phải không?", "medium"), ("Tác phẩm sử dụng vật liệu gì?", "medium"),
    ("Bức tranh này bán được bao nhiêu?", "refuse"), ("Họa sĩ có buồn khi vẽ không?", "refuse"),
    ("Bạn có thể kể về bức tranh không?", "describe"), ("Nói cho tôi nghe về tác phẩm này.", "describe"),
    ("Trong hình có gì?", "describe"),
]


@pytest.mark.parametrize("question,kind", FRESH)
def test_fresh_vietnamese_questions_are_placed(question, kind):
    assert is_vietnamese(question)
    assert vietnamese_kind(question) == kind
    assert model_question(question) == PHRASINGS[kind]["train"][0]


def test_bank_phrasings_are_placed():
    for split in ("vi_train", "vi_heldout"):
        for kind, d in PHRASINGS.items():
            for q in d[split]:
                assert vietnamese_kind(q) == kind, (split, q)


def test_english_and_unplaced_questions_pass_unchanged():
    for d in PHRASINGS.values():
        for q in d["train"] + d["heldout"]:
            assert not is_vietnamese(q) and model_question(q) == q
    assert model_question("Xin chào") == "Xin chào"           # a greeting: no rule places it
    assert canonical_question("artist") == "Who made this artwork?"


def test_session_gives_the_model_the_canonical_question_and_logs_the_visitors(tmp_path):
    from museumtok.llm.audit import AuditLog
    from museumtok.llm.backends import make_backend
    from museumtok.llm.chat import ChatSession

    audit = AuditLog(tmp_path / "audit")
    s = ChatSession(make_backend("echo"), audit=audit, guard=False, check=False)
    rec = s.prepare("Ai là người sáng tác tác phẩm này?")
    assert rec.question == "Ai là người sáng tác tác phẩm này?"
    assert rec.messages[-1]["content"].endswith("Who made this artwork?")
    logged = (tmp_path / "audit").read_text(encoding="utf-8") if (tmp_path / "audit").is_file() else \
        "".join(p.read_text(encoding="utf-8") for p in (tmp_path / "audit").rglob("*") if p.is_file())
    assert "Ai là người sáng tác tác phẩm này?" in logged
