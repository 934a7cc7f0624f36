// Mixture-of-experts feed-forward, as src/model/moe.rs computes it on the CPU: a softmax over
// each row's router logits, the n_used most probable experts kept (ties to the lower id),
// their probabilities renormalized to sum to 1. Every (row, kept expert) pair then runs that
// expert's gate, up and down products (`mmv_id_*` in matvec.cu: the expert's matrix within
// the stacked tensor, chosen by the pair's id on the device), and `moe_combine` adds a row's
// pairs, weighted, in ascending expert order, the order the CPU adds them in.

// One thread per row: n_expert is small (8 to 256) and the work is a few passes over it.
// ids/wts: n_rows x k, each row's pairs in ascending expert id.
extern "C" __global__ void moe_route(const float* __restrict__ logits, int n_rows, int ne, int k,
                                     int* __restrict__ ids, float* __restrict__ wts) {
    rf_grid_start();
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= n_rows) return;
    const float* l = logits + (u64)r * ne;
    int* id = ids + (u64)r * k;
    float* w = wts + (u64)r * k;
    float mx = RF_NEG_INF;
    for (int e = 0; e < ne; e++) mx = fmaxf(mx, l[e]);
    float sum = 0.0f;
    for (int e = 0; e < ne; e++) sum += expf(l[e] - mx);
    // Pick the most probable expert not yet picked, k times: the CPU's stable sort by
    // descending probability, ties to the lower id. NaN probabilities are never picked
    // (the row's logits are then not finite, which the host reports).
    float kept = 0.0f;
    for (int j = 0; j < k; j++) {
        int best = -1;
        float bp = 0.0f;
        for (int e = 0; e < ne; e++) {
            bool taken = false;
            for (int i = 0; i < j; i++) taken |= id[i] == e;
            if (taken) continue;
            const float p = expf(l[e] - mx) / sum;
            if (best < 0 || p > bp) {
                best = e;
                bp = p;
            }
        }
        id[j] = best < 0 ? 0 : best;
        w[j] = bp;
        kept += bp;
    }
    for (int j = 0; j < k; j++) w[j] = kept > 0.0f ? w[j] / kept : 0.0f;
    // Ascending expert id (insertion sort over k <= a few dozen).
    for (int j = 1; j < k; j++) {
        const int e = id[j];
        const float p = w[j];
        int i = j - 1;
        for (; i >= 0 && id[i] > e; i--) {
            id[i + 1] = id[i];
            w[i + 1] = w[i];
        }
        id[i + 1] = e;
        w[i + 1] = p;
    }
}

// out[r] = sum over the row's k pairs, in order, of wts[pair] * y[pair] (rows of d).
extern "C" __global__ void moe_combine(const float* __restrict__ y, const float* __restrict__ wts,
                                       float* __restrict__ out, int k, int d, u64 n) {
    rf_grid_start();
    const u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const u64 r = i / d, c = i % d;
    float o = 0.0f;
    for (int j = 0; j < k; j++) o += wts[r * k + j] * y[(r * k + j) * d + c];
    out[i] = o;
}
