"""Writes examples/corpus.jsonl: a small Japanese corpus with learnable scores.

Each document mixes sentences from eight topics. Its eight target scores are
the share of its sentences that belong to each topic, so they depend on the
words of the text, and a masked LSTM can learn them. The sentences were
written for this project. Run ``python examples/make_corpus.py`` to rebuild
the file; the seed makes it reproducible.
"""

import json
import os
import random

TOPICS = {
    'weather': [
        '今朝は冷たい雨が降っていて、駅まで歩くのが大変だった。',
        '午後から晴れ間が広がり、洗濯物がよく乾いた。',
        '台風が近づいているので、窓の外に置いた鉢植えを片付けた。',
        '山の上では雪が積もり始めたと天気予報が伝えていた。',
        '湿度が高くて、夕方になっても蒸し暑さが残っている。',
        '強い北風が吹いて、公園の落ち葉が舞い上がった。',
        '梅雨明けはまだ先だと気象台が発表した。',
        '夜のうちに霧が出て、朝の川沿いは真っ白だった。',
    ],
    'cooking': [
        '鍋に昆布を入れて、弱火でゆっくり出汁をとった。',
        '玉ねぎを飴色になるまで炒めると、カレーの味が深くなる。',
        '焼き魚には大根おろしと醤油を少し添えるのが好きだ。',
        '味噌汁の具は豆腐とわかめに決めている。',
        '炊き立てのご飯で大きなおにぎりを三つ作った。',
        '鶏肉を生姜と醤油に漬けてから揚げると柔らかい。',
        'パンを焼く前に、生地を一時間ほど休ませた。',
        '冷蔵庫の残り物で野菜炒めを手早く作った。',
    ],
    'sports': [
        '週末の試合で、彼は最後の一分に決勝ゴールを決めた。',
        '毎朝五キロ走るようにしてから、体が軽くなった。',
        '野球部の練習は日が暮れるまで続いた。',
        'マラソン大会の沿道には大勢の人が応援に来ていた。',
        'テニスのサーブを何度も練習して、ようやく安定してきた。',
        '水泳の選手たちがプールで黙々と泳いでいる。',
        '監督は守備の甘さを指摘して、選手を集めて話をした。',
        '体育館でバスケットボールの地区予選が行われた。',
    ],
    'music': [
        'ピアノの発表会に向けて、毎晩同じ曲を弾いている。',
        '古いレコードをかけると、部屋の空気が柔らかくなる。',
        '合唱団の声がホールいっぱいに響いた。',
        'ギターの弦を張り替えたら、音が明るくなった。',
        '新しいアルバムの三曲目がとても気に入っている。',
        'オーケストラの指揮者が静かに腕を上げた。',
        'ライブハウスの前には開演を待つ列ができていた。',
        '祖母は若い頃に三味線を習っていたそうだ。',
    ],
    'travel': [
        '新幹線の窓から富士山がはっきり見えた。',
        '旅館の露天風呂から海に沈む夕日を眺めた。',
        '知らない町の市場を歩いて、名物の干物を買った。',
        '空港で乗り継ぎの便を三時間待つことになった。',
        '地図を持たずに路地を歩くと、小さな寺に出た。',
        '駅前の観光案内所で、バスの時刻表をもらった。',
        '島へ渡るフェリーは一日に二便しかない。',
        '旅の最後に、お土産の和菓子をたくさん買い込んだ。',
    ],
    'work': [
        '月曜の会議で、来期の予算案について議論した。',
        '締め切りに間に合わせるため、報告書を夜遅くまで書いた。',
        '新しい同僚に社内の手続きを一つずつ説明した。',
        '取引先との打ち合わせは予定より長引いた。',
        '上司から企画書の数字をもう一度確認するよう頼まれた。',
        '在宅勤務の日は、朝の通勤がない分だけ早く仕事を始める。',
        '営業部の売り上げが前の月より一割伸びた。',
        '出張の経費精算を金曜日までに提出しなければならない。',
    ],
    'animals': [
        '隣の家の柴犬は、郵便配達の人にだけ吠える。',
        '猫が日なたで丸くなって、気持ちよさそうに眠っている。',
        '動物園のキリンが高い枝の葉を器用に食べていた。',
        '庭の池にカエルが住みついて、夜になると鳴き出す。',
        '公園のハトが、パンくずを求めて足元に集まってきた。',
        '水族館のペンギンが一列になって歩いていた。',
        '田んぼの上をツバメが低く飛んでいる。',
        '飼っているハムスターが回し車を一晩中回している。',
    ],
    'technology': [
        'ノートパソコンのメモリを増やしたら、動作が速くなった。',
        '新しいスマートフォンのカメラは暗い場所でもよく写る。',
        'サーバーの障害で、朝からメールが届かなくなった。',
        'プログラムのテストを自動化して、リリースの手間を減らした。',
        'データベースの索引を見直すと、検索が十倍速くなった。',
        '古いプリンターのドライバーが新しいOSで動かない。',
        '機械学習のモデルを学習させるのに一晩かかった。',
        'Wi-Fiのルーターを再起動したら、接続が安定した。',
    ],
}


def make_documents(n_docs: int = 320, seed: int = 7) -> list[dict]:
  rng = random.Random(seed)
  names = list(TOPICS)
  docs = []
  for i in range(n_docs):
    # Long-tailed length: most documents have a few sentences, some many.
    n_sentences = min(60, max(1, int(rng.lognormvariate(1.6, 0.8))))
    main = rng.sample(names, k=rng.choice([1, 1, 2, 2, 3]))
    topics = [rng.choice(main) if rng.random() < 0.85 else rng.choice(names)
              for _ in range(n_sentences)]
    text = ''.join(rng.choice(TOPICS[t]) for t in topics)
    scores = [round(topics.count(t) / n_sentences, 4) for t in names]
    docs.append({'id': f'doc-{i:04d}', 'text': text, 'scores': scores})
  return docs


def main() -> None:
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      'corpus.jsonl')
  with open(path, 'w', encoding='utf-8') as f:
    for doc in make_documents():
      f.write(json.dumps(doc, ensure_ascii=False) + '\n')
  print(f'wrote {path}')


if __name__ == '__main__':
  main()
