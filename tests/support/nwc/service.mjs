// A NIP-47 (Nostr Wallet Connect) wallet service for the tests: the protocol side is Alby's
// NWCWalletService (npm @getalby/sdk), the money side a real LNbits wallet (its HTTP API).
// usage: node service.mjs RELAY_URL LNBITS_URL ADMINKEY INKEY WALLET_SECRET_HEX CLIENT_PUBKEY_HEX BUDGET_MSAT [ROUNDING]
// BUDGET_MSAT is what the connection may spend in all (0: no budget): past it, pay_invoice
// answers QUOTA_EXCEEDED, as wallets with per-connection budgets do. LNbits's errors map to
// NIP-47 codes (not enough funds: INSUFFICIENT_BALANCE; no such payment: NOT_FOUND).
// ROUNDING is how make_invoice turns msat into LNbits's whole sats: "up" (the default) or
// "down", as a careless wallet would (its invoices then ask less than the amount asked).
// Prints "ready <wallet pubkey>" once subscribed. It sends no NIP-47 notifications.
import WebSocket from "ws";
globalThis.WebSocket ??= WebSocket; // node 20 has no global WebSocket
const { NWCWalletService, NWCWalletServiceKeyPair } = await import("@getalby/sdk");

const [relay, lnbits, adminkey, inkey, walletSecret, clientPubkey, budgetArg, rounding] = process.argv.slice(2);
const budget = Number(budgetArg || 0);
let spent = 0;

class LnbitsError extends Error {
  constructor(status, body) {
    super(`${status} ${JSON.stringify(body)}`);
    this.status = status;
    this.body = JSON.stringify(body);
  }
}
const api = async (method, path, key, body) => {
  const r = await fetch(lnbits + path, {
    method,
    headers: { "X-Api-Key": key, "Content-Type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  const j = await r.json();
  if (!r.ok) throw new LnbitsError(r.status, j);
  return j;
};
const fail = (code, e) => ({ result: undefined, error: { code, message: String(e.message || e) } });
const failure = (e) => {
  if (e.status === 404) return fail("NOT_FOUND", e);
  if (/insufficient balance/i.test(e.body || "")) return fail("INSUFFICIENT_BALANCE", e);
  return fail("INTERNAL", e);
};
const tx = (p, type) => ({
  type, state: p.paid || p.status === "success" ? "settled" : p.status === "failed" ? "failed" : "pending",
  invoice: p.bolt11 || p.details?.bolt11, payment_hash: p.payment_hash || p.details?.payment_hash,
  preimage: p.preimage || p.details?.preimage || "", amount: Math.abs(p.amount ?? p.details?.amount ?? 0),
  description: p.memo || p.details?.memo || "", description_hash: "", fees_paid: 0,
  created_at: Math.floor(Date.now() / 1000), expires_at: undefined,
  settled_at: p.paid || p.status === "success" ? Math.floor(Date.now() / 1000) : undefined, metadata: {},
});
const methods = ["make_invoice", "pay_invoice", "lookup_invoice", "get_info"];

const service = new NWCWalletService({ relayUrls: [relay] });
const keypair = new NWCWalletServiceKeyPair(walletSecret, clientPubkey);
await service.publishWalletServiceInfoEvent(walletSecret, methods, []);
await service.subscribe(keypair, {
  getInfo: async () => ({ result: { alias: "lnbits-test", color: "", pubkey: "", network: "mainnet", block_height: 0, block_hash: "", methods }, error: undefined }),
  makeInvoice: async (req) => {
    try {
      // NIP-47 amounts are msat; LNbits takes sats
      const sats = rounding === "down" ? Math.floor(req.amount / 1000) : Math.ceil(req.amount / 1000);
      const p = await api("POST", "/api/v1/payments", inkey, { out: false, amount: sats, memo: req.description || "", expiry: req.expiry });
      const st = await api("GET", `/api/v1/payments/${p.payment_hash}`, inkey);
      return { result: { ...tx({ ...st, bolt11: p.bolt11, payment_hash: p.payment_hash }, "incoming"), amount: sats * 1000 }, error: undefined };
    } catch (e) { return failure(e); }
  },
  payInvoice: async (req) => {
    try {
      const decoded = await api("POST", "/api/v1/payments/decode", inkey, { data: req.invoice });
      const msat = decoded.amount_msat ?? 0;
      if (budget > 0 && spent + msat > budget) {
        return fail("QUOTA_EXCEEDED", new Error(`the budget of ${budget} msat would be exceeded`));
      }
      const p = await api("POST", "/api/v1/payments", adminkey, { out: true, bolt11: req.invoice });
      spent += msat;
      const st = await api("GET", `/api/v1/payments/${p.payment_hash}`, adminkey);
      return { result: { preimage: st.preimage, fees_paid: 0 }, error: undefined };
    } catch (e) { return failure(e); }
  },
  lookupInvoice: async (req) => {
    try {
      const st = await api("GET", `/api/v1/payments/${req.payment_hash}`, inkey);
      const type = (st.details?.amount ?? 0) < 0 ? "outgoing" : "incoming";
      return { result: { ...tx({ ...st, payment_hash: req.payment_hash }, type), amount: Math.abs(st.details?.amount ?? 0) }, error: undefined };
    } catch (e) { return failure(e); }
  },
});
console.log(`ready ${keypair.walletPubkey}`);
