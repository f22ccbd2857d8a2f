"""What the tipline says, in the sender's language (vi, km, fr, en; others get English).

Templates take `str.format` fields; the values are plain text (messengers show
text as text: no markup is sent).
"""

from __future__ import annotations

LANGUAGES = ("vi", "km", "fr", "en")

MESSAGES: dict[str, dict[str, str]] = {
    "welcome": {
        "en": "Hello! Send me a message, a link or forward a post you doubt, and I will look for a published fact-check. Send /stop to stop receiving messages.",
        "vi": "Xin chào! Hãy gửi tin nhắn, đường link hoặc chuyển tiếp bài viết bạn nghi ngờ, tôi sẽ tìm bài kiểm chứng đã đăng. Gửi /stop để ngừng nhận tin.",
        "km": "សួស្តី! សូមផ្ញើសារ តំណភ្ជាប់ ឬបញ្ជូនបន្តការបង្ហោះដែលអ្នកសង្ស័យ ខ្ញុំនឹងស្វែងរកការត្រួតពិនិត្យការពិតដែលបានផ្សព្វផ្សាយ។ ផ្ញើ /stop ដើម្បីឈប់ទទួលសារ។",
        "fr": "Bonjour ! Envoyez un message, un lien ou transférez une publication dont vous doutez : je cherche une vérification publiée. Envoyez /stop pour ne plus recevoir de messages.",
    },
    "factcheck": {
        "en": "This claim has been fact-checked by {publisher}: {rating}.\nClaim: {claim}\n{url}",
        "vi": "Thông tin này đã được {publisher} kiểm chứng: {rating}.\nNội dung: {claim}\n{url}",
        "km": "ការអះអាងនេះត្រូវបាន {publisher} ត្រួតពិនិត្យ៖ {rating}។\nការអះអាង៖ {claim}\n{url}",
        "fr": "Cette affirmation a été vérifiée par {publisher} : {rating}.\nAffirmation : {claim}\n{url}",
    },
    "followup": {
        "en": "Update on what you sent us: {publisher} has published a fact-check: {rating}.\nClaim: {claim}\n{url}",
        "vi": "Cập nhật về thông tin bạn gửi: {publisher} đã đăng bài kiểm chứng: {rating}.\nNội dung: {claim}\n{url}",
        "km": "ព័ត៌មានថ្មីអំពីអ្វីដែលអ្នកបានផ្ញើ៖ {publisher} បានផ្សព្វផ្សាយការត្រួតពិនិត្យ៖ {rating}។\nការអះអាង៖ {claim}\n{url}",
        "fr": "Suite à votre message : {publisher} a publié une vérification : {rating}.\nAffirmation : {claim}\n{url}",
    },
    "link_warning": {
        "en": "Warning: the link {host} looks risky ({reasons}). Do not enter passwords, codes or bank details there.",
        "vi": "Cảnh báo: đường link {host} có dấu hiệu nguy hiểm ({reasons}). Đừng nhập mật khẩu, mã OTP hay thông tin ngân hàng.",
        "km": "ប្រយ័ត្ន៖ តំណ {host} មើលទៅមានហានិភ័យ ({reasons})។ កុំបញ្ចូលពាក្យសម្ងាត់ លេខកូដ ឬព័ត៌មានធនាគារ។",
        "fr": "Attention : le lien {host} semble risqué ({reasons}). N'y saisissez ni mot de passe, ni code, ni coordonnées bancaires.",
    },
    "lookalike": {
        "en": "it imitates {official}",
        "vi": "giả mạo {official}",
        "km": "ក្លែងបន្លំ {official}",
        "fr": "il imite {official}",
    },
    "risky": {"en": "reported or suspicious address", "vi": "địa chỉ bị báo cáo hoặc đáng ngờ", "km": "អាសយដ្ឋានដែលគេរាយការណ៍ ឬគួរឱ្យសង្ស័យ", "fr": "adresse signalée ou suspecte"},
    "to_desk": {
        "en": "Thank you. We have no published fact-check on this yet; it was passed to our fact-checkers and we will write back here when they publish one.",
        "vi": "Cảm ơn bạn. Chúng tôi chưa có bài kiểm chứng về nội dung này; thông tin đã được chuyển cho nhóm kiểm chứng và chúng tôi sẽ trả lời tại đây khi có kết quả.",
        "km": "សូមអរគុណ។ យើងមិនទាន់មានការត្រួតពិនិត្យលើរឿងនេះទេ វាត្រូវបានបញ្ជូនទៅអ្នកត្រួតពិនិត្យការពិតរបស់យើង ហើយយើងនឹងឆ្លើយតបនៅទីនេះពេលពួកគេផ្សព្វផ្សាយ។",
        "fr": "Merci. Nous n'avons pas encore de vérification publiée à ce sujet ; votre message a été transmis à nos vérificateurs et nous vous répondrons ici dès sa publication.",
    },
    "stopped": {
        "en": "You will receive no more messages from us. Send /start to come back.",
        "vi": "Bạn sẽ không nhận thêm tin nhắn nào. Gửi /start để nhận lại.",
        "km": "អ្នកនឹងមិនទទួលសារពីយើងទៀតទេ។ ផ្ញើ /start ដើម្បីត្រឡប់មកវិញ។",
        "fr": "Vous ne recevrez plus de messages de notre part. Envoyez /start pour revenir.",
    },
    "rate_limited": {
        "en": "You have sent many messages in a short time; please wait a little before sending more.",
        "vi": "Bạn đã gửi nhiều tin nhắn trong thời gian ngắn; vui lòng chờ một chút.",
        "km": "អ្នកបានផ្ញើសារច្រើនក្នុងរយៈពេលខ្លី សូមរង់ចាំបន្តិច។",
        "fr": "Vous avez envoyé beaucoup de messages en peu de temps ; merci de patienter un peu.",
    },
    "empty": {
        "en": "Please send the text or the link you want us to check.",
        "vi": "Vui lòng gửi nội dung hoặc đường link bạn muốn kiểm tra.",
        "km": "សូមផ្ញើអត្ថបទ ឬតំណដែលអ្នកចង់ឱ្យយើងពិនិត្យ។",
        "fr": "Envoyez le texte ou le lien que vous voulez faire vérifier.",
    },
    "helpful": {"en": "👍 Helpful", "vi": "👍 Hữu ích", "km": "👍 មានប្រយោជន៍", "fr": "👍 Utile"},
    "not_helpful": {"en": "👎 Not helpful", "vi": "👎 Không hữu ích", "km": "👎 មិនមានប្រយោជន៍", "fr": "👎 Pas utile"},
    "thanks_feedback": {"en": "Thank you for your feedback.", "vi": "Cảm ơn phản hồi của bạn.", "km": "សូមអរគុណចំពោះមតិរបស់អ្នក។", "fr": "Merci pour votre avis."},
}


def say(key: str, language: str | None, **values: str) -> str:
    table = MESSAGES[key]
    template = table.get(language or "en", table["en"])
    return template.format(**values)
