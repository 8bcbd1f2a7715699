"""Question/answer pairs written for the project in Chinese, Russian, German and Spanish (the languages Baize's users
asked about, and two more), for the planted-dialogue tests of baize.data.text_quality and the selfchat-zh sample."""

from __future__ import annotations

PAIRS = {
    "zh": [
        ("为什么天空是蓝色的？", "阳光进入大气层后，波长较短的蓝光比红光更容易被空气分子散射，所以我们从各个方向看到的天空都是蓝色的。傍晚时阳光穿过更厚的大气，蓝光被散射掉，天空就变成了橙红色。"),
        ("如何学好一门外语？", "最重要的是每天坚持练习，哪怕只有二十分钟。可以先掌握最常用的一千个词，再通过阅读、听播客和与母语者交谈来巩固。不要害怕犯错，错误是学习过程中很自然的一部分。"),
        ("咖啡对身体有什么影响？", "适量饮用咖啡可以提神，帮助集中注意力，一些研究还发现它与降低某些疾病的风险有关。但是喝得太多可能导致失眠、心跳加快和焦虑，孕妇和对咖啡因敏感的人应该控制摄入量。"),
        ("怎样才能睡得更好？", "尽量每天在同一时间上床和起床，睡前一小时不要看手机，卧室保持安静、黑暗和凉爽。下午以后少喝咖啡和浓茶，白天适当运动也能让晚上更容易入睡。"),
        ("什么是光合作用？", "光合作用是植物利用阳光、水和二氧化碳制造葡萄糖并释放氧气的过程。这个过程主要发生在叶片细胞的叶绿体中，叶绿素负责吸收光能。地球上大部分生命所需的能量最终都来自光合作用。"),
        ("学习编程应该从哪种语言开始？", "很多人推荐从 Python 开始，因为它的语法简洁，读起来接近自然语言，而且资料非常丰富。入门以后可以根据兴趣选择方向，比如做网页可以学习 JavaScript，做手机应用可以学习 Kotlin 或 Swift。"),
        ("为什么要多喝水？", "水参与身体几乎所有的生理活动，比如调节体温、运输营养物质和排出废物。缺水会让人感到疲劳、头痛，注意力下降。一般建议成年人每天喝一千五百到两千毫升的水，运动或天气炎热时需要更多。"),
        ("长城有多长？", "根据国家文物局的测量，历代长城的总长度约为两万一千多公里。我们今天看到的大部分砖石长城修建于明朝，最著名的八达岭和慕田峪段都在北京附近，每年吸引大量游客。"),
    ],
    "ru": [
        ("Почему небо голубое?", "Солнечный свет рассеивается молекулами воздуха, и коротковолновый синий свет рассеивается гораздо сильнее красного. Поэтому днём небо кажется голубым со всех сторон, а на закате, когда свет проходит через толстый слой атмосферы, оно становится оранжевым."),
        ("Как быстрее выучить иностранный язык?", "Главное заниматься каждый день, хотя бы по двадцать минут. Сначала выучите самые частые слова, затем читайте простые тексты, слушайте подкасты и разговаривайте с носителями языка. Не бойтесь ошибок, без них невозможно научиться."),
        ("Чем полезна ходьба?", "Регулярная ходьба укрепляет сердце и сосуды, помогает контролировать вес и улучшает настроение. Достаточно получаса быстрой ходьбы в день, чтобы заметно снизить риск многих хронических заболеваний."),
        ("Что такое фотосинтез?", "Фотосинтез это процесс, в котором растения используют энергию солнечного света, воду и углекислый газ, чтобы получить глюкозу и выделить кислород. Он происходит в хлоропластах клеток листьев."),
    ],
    "de": [
        ("Warum ist der Himmel blau?", "Das Sonnenlicht wird an den Molekülen der Luft gestreut, und kurzwelliges blaues Licht wird viel stärker gestreut als rotes. Deshalb sehen wir tagsüber einen blauen Himmel, während er bei Sonnenuntergang orange und rot leuchtet."),
        ("Wie lerne ich am besten eine neue Sprache?", "Am wichtigsten ist es, jeden Tag ein wenig zu üben. Lernen Sie zuerst die häufigsten Wörter, lesen Sie einfache Texte und sprechen Sie so oft wie möglich mit Muttersprachlern. Fehler gehören zum Lernen dazu."),
        ("Warum sollte man genug Wasser trinken?", "Wasser ist an fast allen Vorgängen im Körper beteiligt, zum Beispiel an der Regulierung der Körpertemperatur und am Transport von Nährstoffen. Wer zu wenig trinkt, wird schneller müde und bekommt oft Kopfschmerzen."),
    ],
    "es": [
        ("¿Por qué el cielo es azul?", "La luz del sol se dispersa al chocar con las moléculas del aire, y la luz azul, de longitud de onda corta, se dispersa mucho más que la roja. Por eso durante el día vemos el cielo azul, y al atardecer se vuelve naranja."),
        ("¿Cómo puedo dormir mejor?", "Intenta acostarte y levantarte siempre a la misma hora, evita las pantallas una hora antes de dormir y mantén el dormitorio oscuro, tranquilo y fresco. Reducir el café por la tarde también ayuda mucho."),
        ("¿Qué es la fotosíntesis?", "La fotosíntesis es el proceso por el cual las plantas usan la luz del sol, el agua y el dióxido de carbono para producir glucosa y liberar oxígeno. Ocurre sobre todo en los cloroplastos de las hojas."),
    ],
}  # fmt: skip


def dialogue(*pairs: tuple[str, str]) -> list[dict]:
    """Chat messages from question/answer pairs."""
    return [m for q, a in pairs for m in ({"role": "user", "content": q}, {"role": "assistant", "content": a})]
