import { BPETokenizer } from '../mingpt/bpe.ts';
const bpe = new BPETokenizer();
const t = 'Michelle Jones was a top-notch student who always finished her homework early, helped her friends with their mathematics, and never once missed a single class all year. When the teacher asked who had won the prize, everyone said Michelle';
console.log(bpe.encode(t).length, bpe.encode(t.replace('Jones', 'Smith')).length);
